-- Fold one batch's ticks (a line range of one file) into the 1-minute bars. Each (symbol, minute)
-- is aggregated over the batch, then merged with the stored bar: counts and volume add, high and
-- low widen, open/close go to the earliest/latest tick by (event_time, source_file, source_line).
-- ON CONFLICT locks the bar row, so concurrent loaders merge without losing each other's ticks.
INSERT INTO scalp_1m_bars AS b (symbol, bar_time, open, high, low, close, volume, tick_count, coverage_ratio, session_id,
                                mitigation_level, quality_flag, open_time, open_file, open_line, close_time, close_file, close_line)
SELECT symbol, date_trunc('minute', event_time),
       (array_agg(last_price ORDER BY event_time, source_line))[1], max(last_price), min(last_price),
       (array_agg(last_price ORDER BY event_time DESC, source_line DESC))[1],
       sum(volume), count(*), count(*) / 120.0,
       (array_agg(session_id ORDER BY event_time DESC, source_line DESC))[1], max(mitigation_level),
       coalesce(max(quality_flag) FILTER (WHERE quality_flag <> 'normal'), 'normal'),
       min(event_time), %(file)s, (array_agg(source_line ORDER BY event_time, source_line))[1],
       max(event_time), %(file)s, (array_agg(source_line ORDER BY event_time DESC, source_line DESC))[1]
FROM scalp_ticks
WHERE source_file = %(file)s AND source_line BETWEEN %(first)s AND %(last)s
GROUP BY symbol, date_trunc('minute', event_time)
ORDER BY 1, 2  -- every loader locks bar rows in the same order: no deadlocks between them
ON CONFLICT (symbol, bar_time) DO UPDATE SET
    open = CASE WHEN (EXCLUDED.open_time, EXCLUDED.open_file, EXCLUDED.open_line) < (b.open_time, b.open_file, b.open_line)
                THEN EXCLUDED.open ELSE b.open END,
    open_time = least(b.open_time, EXCLUDED.open_time),
    open_file = CASE WHEN (EXCLUDED.open_time, EXCLUDED.open_file, EXCLUDED.open_line) < (b.open_time, b.open_file, b.open_line)
                THEN EXCLUDED.open_file ELSE b.open_file END,
    open_line = CASE WHEN (EXCLUDED.open_time, EXCLUDED.open_file, EXCLUDED.open_line) < (b.open_time, b.open_file, b.open_line)
                THEN EXCLUDED.open_line ELSE b.open_line END,
    close = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_file, EXCLUDED.close_line) > (b.close_time, b.close_file, b.close_line)
                 THEN EXCLUDED.close ELSE b.close END,
    session_id = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_file, EXCLUDED.close_line) > (b.close_time, b.close_file, b.close_line)
                 THEN EXCLUDED.session_id ELSE b.session_id END,
    close_time = greatest(b.close_time, EXCLUDED.close_time),
    close_file = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_file, EXCLUDED.close_line) > (b.close_time, b.close_file, b.close_line)
                 THEN EXCLUDED.close_file ELSE b.close_file END,
    close_line = CASE WHEN (EXCLUDED.close_time, EXCLUDED.close_file, EXCLUDED.close_line) > (b.close_time, b.close_file, b.close_line)
                 THEN EXCLUDED.close_line ELSE b.close_line END,
    high = greatest(b.high, EXCLUDED.high),
    low = least(b.low, EXCLUDED.low),
    volume = b.volume + EXCLUDED.volume,
    tick_count = b.tick_count + EXCLUDED.tick_count,
    coverage_ratio = (b.tick_count + EXCLUDED.tick_count) / 120.0,
    mitigation_level = greatest(b.mitigation_level, EXCLUDED.mitigation_level),
    quality_flag = CASE WHEN b.quality_flag = 'normal' THEN EXCLUDED.quality_flag
                        WHEN EXCLUDED.quality_flag = 'normal' THEN b.quality_flag
                        ELSE greatest(b.quality_flag, EXCLUDED.quality_flag) END
