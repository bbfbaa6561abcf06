-- After a swing file's rows left observer_bars_10m: forget its versions, and give each bar it had won
-- the best version another file still provides (by load_swing's rule: the latest time in the file's
-- name, then line, then key), as a load would have.
WITH gone AS (
    DELETE FROM swing_bar_versions WHERE source_file = %(file)s RETURNING symbol, bar_time
)
INSERT INTO observer_bars_10m (ticker, polled_at, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market,
                            source, source_file, source_line)
SELECT DISTINCT ON (v.symbol, v.bar_time)
       v.symbol, v.bar_time, v.open, v.high, v.low, v.close, v.volume, v.bid_price, v.ask_price, v.session_id, v.dataset, v.market,
       v.source, v.source_file, v.source_line
FROM swing_bar_versions v
JOIN (SELECT DISTINCT symbol, bar_time FROM gone) g ON g.symbol = v.symbol AND g.bar_time = v.bar_time
LEFT JOIN jsonl_file_checkpoints c ON c.source_file = v.source_file
WHERE v.source_file <> %(file)s
ORDER BY v.symbol, v.bar_time, COALESCE(c.file_time, '-infinity') DESC, v.source_line DESC, v.source_file DESC
ON CONFLICT (ticker, polled_at) DO NOTHING
