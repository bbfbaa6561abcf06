-- Recompute the bars of the minutes in minutes_to_refresh from every stored tick (after a reload).
INSERT INTO observer_bars_1m (ticker, bar_start_at, open, high, low, close, volume, tick_count, coverage_ratio, session_id,
                              mitigation_level, quality_flag, open_tick_at, open_file, open_line, close_tick_at, close_file, close_line)
SELECT t.ticker, m.bar_time,
       (array_agg(t.last_price ORDER BY t.event_at, t.source_file, t.source_line))[1],
       max(t.last_price), min(t.last_price),
       (array_agg(t.last_price ORDER BY t.event_at DESC, t.source_file DESC, t.source_line DESC))[1],
       sum(t.volume), count(*), count(*) / 120.0,
       (array_agg(t.session_id ORDER BY t.event_at DESC, t.source_file DESC, t.source_line DESC))[1],
       max(t.mitigation_level),
       coalesce(max(t.quality_flag) FILTER (WHERE t.quality_flag <> 'normal'), 'normal'),
       min(t.event_at),
       (array_agg(t.source_file ORDER BY t.event_at, t.source_file, t.source_line))[1],
       (array_agg(t.source_line ORDER BY t.event_at, t.source_file, t.source_line))[1],
       max(t.event_at),
       (array_agg(t.source_file ORDER BY t.event_at DESC, t.source_file DESC, t.source_line DESC))[1],
       (array_agg(t.source_line ORDER BY t.event_at DESC, t.source_file DESC, t.source_line DESC))[1]
FROM (SELECT DISTINCT symbol, bar_time FROM minutes_to_refresh) m
JOIN observer_ticks t ON t.ticker = m.symbol AND t.event_at >= m.bar_time AND t.event_at < m.bar_time + interval '1 minute'
GROUP BY t.ticker, m.bar_time
