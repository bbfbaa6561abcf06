INSERT INTO scalp_ticks (symbol, event_time, ts, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id,
                         mitigation_level, quality_flag, source_file, source_line)
SELECT symbol, event_time, ts, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id, mitigation_level,
       quality_flag, %(file)s, source_line
FROM stage_scalp
ON CONFLICT (source_file, source_line) DO NOTHING
