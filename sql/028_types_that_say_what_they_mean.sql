-- Share counts are whole numbers (Yahoo reports them so; a double let 1.5 shares in).
ALTER TABLE collected_shares_outstanding ALTER COLUMN shares TYPE bigint USING round(shares)::bigint;
COMMENT ON COLUMN collected_shares_outstanding.shares IS 'Shares outstanding as Yahoo reported them on observed_on (a whole number).';

-- corporate_actions.value is a ratio for a split and a cash amount for a dividend: one column each
-- beside it, so a query cannot mix them up (generated from value and kind: they cannot drift).
ALTER TABLE corporate_actions ADD COLUMN IF NOT EXISTS split_ratio double precision
    GENERATED ALWAYS AS (CASE WHEN kind = 'split' THEN value END) STORED;
ALTER TABLE corporate_actions ADD COLUMN IF NOT EXISTS dividend_amount double precision
    GENERATED ALWAYS AS (CASE WHEN kind = 'dividend' THEN value END) STORED;
COMMENT ON COLUMN corporate_actions.split_ratio IS 'For a split, new shares per old share (4 for a 4-for-1, 0.1 for a 1-for-10); NULL for a dividend.';
COMMENT ON COLUMN corporate_actions.dividend_amount IS 'For a dividend, the cash amount per share in the listing''s currency; NULL for a split.';
COMMENT ON COLUMN corporate_actions.ex_date IS 'The ex-date: the first session the price trades without the dividend, or after the split.';
