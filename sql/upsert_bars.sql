-- Upsert staged bars; rows whose values did not change are left alone (fetched_at included).
-- The changed rows' date span per ticker goes to price_changes, so events valued on the old
-- values are revalued by the next event-valuation run.
WITH changed AS (
    INSERT INTO {table} AS t (ticker, trade_date, open, high, low, close, adj_close, volume, repaired, source, fetched_at)
    SELECT ticker, trade_date, open, high, low, close, adj_close, volume, coalesce(repaired, 0) = 1, %(source)s, now()
    FROM stage_bars
    ON CONFLICT (ticker, trade_date) DO UPDATE SET
        open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
        adj_close = EXCLUDED.adj_close, volume = EXCLUDED.volume, repaired = EXCLUDED.repaired, source = EXCLUDED.source,
        fetched_at = EXCLUDED.fetched_at, run_id = coalesce(EXCLUDED.run_id, t.run_id)
    WHERE (t.open, t.high, t.low, t.close, t.adj_close, t.volume, t.repaired)
          IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.adj_close, EXCLUDED.volume,
                            EXCLUDED.repaired)
    RETURNING ticker, trade_date, (xmax = 0) AS inserted
), logged AS (
    INSERT INTO price_changes (table_name, ticker, first_date, last_date)
    SELECT %(table_name)s, ticker, min(trade_date), max(trade_date) FROM changed GROUP BY ticker
)
SELECT count(*) FILTER (WHERE inserted), count(*) FROM changed
