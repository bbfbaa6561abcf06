-- A load time on every data table (029 began it): the one-minute bars and the gap ledger had none.
-- A column with a default that is not volatile is added without a rewrite: the rows stored before
-- it say the time of this upgrade.
ALTER TABLE observer_bars_1m ADD COLUMN IF NOT EXISTS loaded_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE observer_gaps ADD COLUMN IF NOT EXISTS loaded_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN observer_bars_1m.loaded_at IS 'When the bar was last written (its load time); a bar stored before migration 038 says the time of that upgrade.';
COMMENT ON COLUMN observer_gaps.loaded_at IS 'When the gap was loaded (its load time); a gap stored before migration 038 says the time of that upgrade.';
