-- Keep every line's version of its bar (then load_swing lets the winner into observer_bars_10m).
INSERT INTO swing_bar_versions (symbol, bar_time, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market,
                                source, source_file, source_line)
SELECT symbol, bar_time, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market, source, %(file)s, source_line
FROM stage_swing
ON CONFLICT (source_file, source_line) DO UPDATE SET
    symbol = EXCLUDED.symbol, bar_time = EXCLUDED.bar_time, open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low,
    close = EXCLUDED.close, volume = EXCLUDED.volume, bid_price = EXCLUDED.bid_price, ask_price = EXCLUDED.ask_price,
    session_id = EXCLUDED.session_id, dataset = EXCLUDED.dataset, market = EXCLUDED.market, source = EXCLUDED.source