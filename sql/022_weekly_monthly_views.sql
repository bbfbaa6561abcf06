-- Weekly and monthly bars, derived from the stored daily ones (backfill --interval 1wk|1mo fetches
-- the daily bars): per ticker and ISO week (Monday) or calendar month, the first session's open,
-- the highest high, the lowest low, the last session's close and adjusted close, the volume summed,
-- and the sessions it holds (a week with a holiday has 4; the current week only those stored).
-- collected_weekly_stock_bars, collected_monthly_stock_bars, collected_weekly_etf_bars, collected_monthly_etf_bars.
DO $$
DECLARE
    source record;
    unit text;
BEGIN
    FOR source IN SELECT * FROM (VALUES ('stock', 'collected_daily_stock_history'), ('etf', 'collected_daily_etf_ohlc')) s(kind, tab) LOOP
        FOREACH unit IN ARRAY ARRAY['week', 'month'] LOOP
            EXECUTE format(
                'CREATE OR REPLACE VIEW %I AS SELECT ticker, date_trunc(%L, trade_date)::date AS %I, min(trade_date) AS first_session,'
                ' max(trade_date) AS last_session, (array_agg(open ORDER BY trade_date))[1] AS open, max(high) AS high,'
                ' min(low) AS low, (array_agg(close ORDER BY trade_date DESC))[1] AS close,'
                ' (array_agg(adj_close ORDER BY trade_date DESC))[1] AS adj_close, sum(volume)::bigint AS volume,'
                ' count(*) AS sessions FROM %I GROUP BY ticker, date_trunc(%L, trade_date)',
                'collected_' || unit || 'ly_' || source.kind || '_bars', unit, unit || '_start', source.tab, unit);
        END LOOP;
    END LOOP;
END $$;
