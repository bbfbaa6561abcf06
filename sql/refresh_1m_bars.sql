-- Recompute the bars of the minutes in minutes_to_refresh from every stored tick (after a reload).
INSERT INTO scalp_1m_bars (symbol, bar_time, open, high, low, close, volume, tick_count, coverage_ratio, session_id,
                           mitigation_level, quality_flag, open_time, open_file, open_line, close_time, close_file, close_line)
SELECT t.symbol, m.bar_time,
       (array_agg(t.last_price ORDER BY t.event_time, t.source_file, t.source_line))[1],
       max(t.last_price), min(t.last_price),
       (array_agg(t.last_price ORDER BY t.event_time DESC, t.source_file DESC, t.source_line DESC))[1],
       sum(t.volume), count(*), count(*) / 120.0,
       (array_agg(t.session_id ORDER BY t.event_time DESC, t.source_file DESC, t.source_line DESC))[1],
       max(t.mitigation_level),
       coalesce(max(t.quality_flag) FILTER (WHERE t.quality_flag <> 'normal'), 'normal'),
       min(t.event_time),
       (array_agg(t.source_file ORDER BY t.event_time, t.source_file, t.source_line))[1],
       (array_agg(t.source_line ORDER BY t.event_time, t.source_file, t.source_line))[1],
       max(t.event_time),
       (array_agg(t.source_file ORDER BY t.event_time DESC, t.source_file DESC, t.source_line DESC))[1],
       (array_agg(t.source_line ORDER BY t.event_time DESC, t.source_file DESC, t.source_line DESC))[1]
FROM (SELECT DISTINCT symbol, bar_time FROM minutes_to_refresh) m
JOIN scalp_ticks t ON t.symbol = m.symbol AND t.event_time >= m.bar_time AND t.event_time < m.bar_time + interval '1 minute'
GROUP BY t.symbol, m.bar_time
