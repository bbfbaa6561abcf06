-- A changed swing file's earlier content is kept (tasks/jsonl/load.py keep_earlier_content): its
-- versions move to the provenance %(kept_as)s, and each bar it had won is decided again among all
-- versions by load_swing's rule (the latest time in the file's name, then line, then key). Kept
-- content has no file time of its own, so a dated file's version, and the file's new content as it
-- loads, win over it; a bar only the earlier content had stays, under its new provenance.
WITH won AS (
    DELETE FROM observer_bars_10m WHERE source_file = %(file)s RETURNING ticker AS symbol, polled_at AS bar_time
), kept AS (
    UPDATE swing_bar_versions SET source_file = %(kept_as)s WHERE source_file = %(file)s
    RETURNING symbol, bar_time, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market, source,
              source_file, source_line
), candidates AS (
    SELECT symbol, bar_time, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market, source,
           source_file, source_line
    FROM swing_bar_versions WHERE source_file <> %(file)s AND (symbol, bar_time) IN (SELECT symbol, bar_time FROM won)
    UNION ALL
    SELECT * FROM kept WHERE (symbol, bar_time) IN (SELECT symbol, bar_time FROM won)
)
INSERT INTO observer_bars_10m (ticker, polled_at, open, high, low, close, volume, bid_price, ask_price, session_id, dataset, market,
                            source, source_file, source_line)
SELECT DISTINCT ON (v.symbol, v.bar_time)
       v.symbol, v.bar_time, v.open, v.high, v.low, v.close, v.volume, v.bid_price, v.ask_price, v.session_id, v.dataset, v.market,
       v.source, v.source_file, v.source_line
FROM candidates v
LEFT JOIN jsonl_file_checkpoints c ON c.source_file = v.source_file
ORDER BY v.symbol, v.bar_time, COALESCE(c.file_time, '-infinity') DESC, v.source_line DESC, v.source_file DESC
