-- Lineage: every data row says which run last wrote it (run_id, a run of backfill_internal.backfill_runs,
-- which keeps each command's runs as long as retention keeps runs), beside its load time. A writing
-- command sets market_backfill.run_id on its connections (tasks/core/runs.py); the column's default
-- reads it, and upserts and updates carry it. Adding a column whose default is not volatile
-- rewrites nothing: rows stored before say NULL (written before runs were recorded).
DO $$
DECLARE
    data_table text;
BEGIN
    FOREACH data_table IN ARRAY ARRAY[
        'collected_daily_etf_ohlc', 'collected_daily_stock_history', 'collected_daily_benchmark_ohlc', 'collected_intraday_bars',
        'corporate_actions', 'collected_meta_etf', 'collected_shares_outstanding', 'analytics_trending_sectors',
        'analytics_trending_stocks', 'analytics_portfolio_allocation', 'txn_events', 'scalp_ticks', 'scalp_1m_bars',
        'swing_bars_10m', 'scalp_gaps']
    LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS run_id bigint'
                       ' DEFAULT nullif(current_setting(''market_backfill.run_id'', true), '''')::bigint', data_table);
        EXECUTE format('COMMENT ON COLUMN %I.run_id IS %L', data_table,
                       'The run that last wrote the row: backfill_internal.backfill_runs.run_id (its command, flow and times); '
                       'NULL for rows written before runs were recorded.');
    END LOOP;
END
$$;

CREATE OR REPLACE VIEW daily_bars AS
    SELECT 'etf'::text AS universe, ticker, trade_date, open, high, low, close, adj_close, volume, repaired, source, fetched_at,
           run_id
    FROM collected_daily_etf_ohlc
    UNION ALL
    SELECT 'benchmark', ticker, trade_date, open, high, low, close, adj_close, volume, repaired, source, fetched_at, run_id
    FROM collected_daily_benchmark_ohlc
    UNION ALL
    SELECT 'stock', ticker, trade_date, open, high, low, close, adj_close, volume, repaired, source, fetched_at, run_id
    FROM collected_daily_stock_history;
COMMENT ON COLUMN daily_bars.run_id IS 'The run that last wrote the bar: backfill_internal.backfill_runs.run_id.';
COMMENT ON TABLE backfill_runs IS 'Every run of a command that writes data (the backfills, event valuation, JSONL ingestion, the daily pipeline): its command line, parameters, status (running, done, failed, rate_limited, interrupted, crashed) and summary line; the data tables'' run_id names one.';
