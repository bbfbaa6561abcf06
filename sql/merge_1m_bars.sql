-- Fold one batch's 1-minute bars (aggregated by the loader from the ticks it just stored, one file's
-- line range: tasks/jsonl/ticks.minute_bars) into the stored bars: counts and volume add, high and
-- low widen, open/close go to the earliest/latest tick by (event_at, source_file, source_line).
-- ON CONFLICT locks the bar row, so concurrent loaders merge without losing each other's ticks.
INSERT INTO observer_bars_1m AS b (ticker, bar_start_at, open, high, low, close, volume, tick_count, coverage_ratio, session_id,
                                mitigation_level, quality_flag, open_tick_at, open_file, open_line, close_tick_at, close_file,
                                close_line)
SELECT s.symbol, s.bar_time, s.open, s.high, s.low, s.close, s.volume, s.tick_count, s.tick_count / 120.0, s.session_id,
       s.mitigation_level, coalesce((SELECT max(f) FROM jsonb_array_elements_text(s.flags) f), 'normal'),
       s.open_time, %(file)s, s.open_line, s.close_time, %(file)s, s.close_line
FROM unnest(%(symbol)s::text[], %(bar_time)s::timestamptz[], %(open)s::text[]::numeric[], %(high)s::text[]::numeric[],
            %(low)s::text[]::numeric[], %(close)s::text[]::numeric[], %(volume)s::bigint[], %(ticks)s::int[], %(session)s::text[],
            %(level)s::int[], %(flags)s::text[]::jsonb[], %(open_time)s::text[]::timestamptz[], %(open_line)s::int[],
            %(close_time)s::text[]::timestamptz[], %(close_line)s::int[])
     AS s(symbol, bar_time, open, high, low, close, volume, tick_count, session_id, mitigation_level, flags, open_time, open_line,
          close_time, close_line)
ORDER BY 1, 2  -- every loader locks bar rows in the same order: no deadlocks between them
ON CONFLICT (ticker, bar_start_at) DO UPDATE SET
    open = CASE WHEN (EXCLUDED.open_tick_at, EXCLUDED.open_file, EXCLUDED.open_line) < (b.open_tick_at, b.open_file, b.open_line)
                THEN EXCLUDED.open ELSE b.open END,
    open_tick_at = least(b.open_tick_at, EXCLUDED.open_tick_at),
    open_file = CASE WHEN (EXCLUDED.open_tick_at, EXCLUDED.open_file, EXCLUDED.open_line) < (b.open_tick_at, b.open_file, b.open_line)
                THEN EXCLUDED.open_file ELSE b.open_file END,
    open_line = CASE WHEN (EXCLUDED.open_tick_at, EXCLUDED.open_file, EXCLUDED.open_line) < (b.open_tick_at, b.open_file, b.open_line)
                THEN EXCLUDED.open_line ELSE b.open_line END,
    close = CASE WHEN (EXCLUDED.close_tick_at, EXCLUDED.close_file, EXCLUDED.close_line) > (b.close_tick_at, b.close_file, b.close_line)
                 THEN EXCLUDED.close ELSE b.close END,
    session_id = CASE WHEN (EXCLUDED.close_tick_at, EXCLUDED.close_file, EXCLUDED.close_line) > (b.close_tick_at, b.close_file, b.close_line)
                 THEN EXCLUDED.session_id ELSE b.session_id END,
    close_tick_at = greatest(b.close_tick_at, EXCLUDED.close_tick_at),
    close_file = CASE WHEN (EXCLUDED.close_tick_at, EXCLUDED.close_file, EXCLUDED.close_line) > (b.close_tick_at, b.close_file, b.close_line)
                 THEN EXCLUDED.close_file ELSE b.close_file END,
    close_line = CASE WHEN (EXCLUDED.close_tick_at, EXCLUDED.close_file, EXCLUDED.close_line) > (b.close_tick_at, b.close_file, b.close_line)
                 THEN EXCLUDED.close_line ELSE b.close_line END,
    high = greatest(b.high, EXCLUDED.high),
    low = least(b.low, EXCLUDED.low),
    volume = b.volume + EXCLUDED.volume,
    tick_count = b.tick_count + EXCLUDED.tick_count,
    coverage_ratio = (b.tick_count + EXCLUDED.tick_count) / 120.0,
    mitigation_level = greatest(b.mitigation_level, EXCLUDED.mitigation_level),
    quality_flag = CASE WHEN b.quality_flag = 'normal' THEN EXCLUDED.quality_flag
                        WHEN EXCLUDED.quality_flag = 'normal' THEN b.quality_flag
                        ELSE greatest(b.quality_flag, EXCLUDED.quality_flag) END,
    loaded_at = now(),
    run_id = coalesce(EXCLUDED.run_id, b.run_id)
