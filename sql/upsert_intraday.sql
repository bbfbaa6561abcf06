-- Upsert staged intraday bars of one interval; rows whose values did not change are left alone
-- (fetched_at included). Returns how many of the staged bars were stored before (the partitioned
-- table has no xmax to tell an insert from an update by) and how many were inserted or changed.
WITH before AS (
    SELECT count(*) AS n FROM stage_intraday s
    JOIN intraday_bars t ON t.ticker = s.ticker AND t.interval = %(interval)s AND t.bar_start_at = to_timestamp(s.bar_epoch)
), changed AS (
    INSERT INTO intraday_bars AS t (ticker, interval, bar_start_at, session_date, regular, open, high, low, close, volume, repaired,
                                              source, fetched_at)
    SELECT ticker, %(interval)s, to_timestamp(bar_epoch), session, regular = 1, open, high, low, close, volume, coalesce(repaired, 0) = 1,
           %(source)s, now()
    FROM stage_intraday
    ON CONFLICT (ticker, interval, bar_start_at) DO UPDATE SET
        session_date = EXCLUDED.session_date, regular = EXCLUDED.regular, open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
        close = EXCLUDED.close, volume = EXCLUDED.volume, repaired = EXCLUDED.repaired, source = EXCLUDED.source,
        fetched_at = EXCLUDED.fetched_at, run_id = coalesce(EXCLUDED.run_id, t.run_id)
    WHERE (t.open, t.high, t.low, t.close, t.volume, t.regular, t.repaired)
          IS DISTINCT FROM (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume, EXCLUDED.regular, EXCLUDED.repaired)
    RETURNING 1
)
SELECT (SELECT n FROM before), (SELECT count(*) FROM changed)
