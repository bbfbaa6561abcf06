-- States said, not implied: an event not valued yet is 'pending' (it was NULL), and the columns that
-- name where a row came from take only the sources the tool has. The checks on existing rows are
-- added NOT VALID (no scan under a lock); every row written from now on is checked.
ALTER TABLE txn_events DROP CONSTRAINT IF EXISTS txn_events_valuation_status_check;
ALTER TABLE txn_events ALTER COLUMN valuation_status SET DEFAULT 'pending';
-- The events not valued yet (NULL until now) are said 'pending' after the migration, in batches that
-- each commit, by the first command (tasks/core/upgrades.py): a large table is not locked for one long
-- UPDATE, and a kill loses one batch. Then these checks are validated and the column made NOT NULL.
ALTER TABLE txn_events ADD CONSTRAINT txn_events_valuation_status_given CHECK (valuation_status IS NOT NULL) NOT VALID;
ALTER TABLE txn_events ADD CONSTRAINT txn_events_valuation_status_check
    CHECK (valuation_status IN ('pending', 'ok', 'no_data', 'error')) NOT VALID;
COMMENT ON COLUMN txn_events.valuation_status IS 'pending (not valued yet), ok, no_data (no bar at or before the event) or error (see valuation_error).';

ALTER TABLE collected_daily_etf_ohlc ADD CONSTRAINT collected_daily_etf_ohlc_source_check CHECK (source IN ('yahoo')) NOT VALID;
ALTER TABLE collected_daily_stock_history ADD CONSTRAINT collected_daily_stock_history_source_check
    CHECK (source IN ('yahoo')) NOT VALID;
ALTER TABLE collected_daily_benchmark_ohlc ADD CONSTRAINT collected_daily_benchmark_ohlc_source_check
    CHECK (source IN ('yahoo')) NOT VALID;
ALTER TABLE collected_intraday_bars ADD CONSTRAINT collected_intraday_bars_source_check CHECK (source IN ('yahoo')) NOT VALID;
ALTER TABLE collected_meta_etf ADD CONSTRAINT collected_meta_etf_source_check CHECK (source IN ('yahoo', 'ssga')) NOT VALID;
