INSERT INTO observer_bars_10m (ticker, polled_at, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market,
                            source, source_file, source_line)
SELECT DISTINCT ON (symbol, bar_time)
       symbol, bar_time, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market, source, %(file)s, source_line
FROM stage_swing
ORDER BY symbol, bar_time, source_line DESC
ON CONFLICT (ticker, polled_at) DO UPDATE SET
    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
    bid_price = EXCLUDED.bid_price, ask_price = EXCLUDED.ask_price, session_id = EXCLUDED.session_id,
    dataset = EXCLUDED.dataset, market = EXCLUDED.market, source = EXCLUDED.source,
    source_file = EXCLUDED.source_file, source_line = EXCLUDED.source_line, loaded_at = now(),
    run_id = coalesce(EXCLUDED.run_id, observer_bars_10m.run_id)
-- The same bar in several files: the file whose name has the latest time wins (a file without one
-- loses to every dated file), then the latest line, then the key, whatever order the files load
-- in and concurrent loaders commit in; where the files sit does not count.
WHERE (COALESCE(%(file_time)s::timestamp, '-infinity'), EXCLUDED.source_line, EXCLUDED.source_file)
    > (COALESCE((SELECT c.file_time FROM jsonl_file_checkpoints c WHERE c.source_file = observer_bars_10m.source_file), '-infinity'),
       observer_bars_10m.source_line, observer_bars_10m.source_file)
