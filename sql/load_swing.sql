INSERT INTO swing_bars_10m (symbol, bar_time, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market,
                            source, source_file, source_line)
SELECT DISTINCT ON (symbol, bar_time)
       symbol, bar_time, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market, source, %(file)s, source_line
FROM stage_swing
ORDER BY symbol, bar_time, source_line DESC
ON CONFLICT (symbol, bar_time) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
    bid_price = EXCLUDED.bid_price, ask_price = EXCLUDED.ask_price, session_id = EXCLUDED.session_id,
    dataset = EXCLUDED.dataset, market = EXCLUDED.market, source = EXCLUDED.source,
    source_file = EXCLUDED.source_file, source_line = EXCLUDED.source_line
-- The same bar in several files: the latest file (names sort by time), then the latest line, wins,
-- whatever order concurrent loaders commit in.
WHERE (EXCLUDED.source_file, EXCLUDED.source_line) > (swing_bars_10m.source_file, swing_bars_10m.source_line)
