-- A file's checkpoint, written in the transaction of the batch it covers: how far the file is
-- loaded, the SHA-256 of that prefix (to tell an appended file from a rewritten one), its origin,
-- and the UTC days its ticks fell on (added to those of earlier batches).
INSERT INTO jsonl_file_checkpoints (source_file, kind, bytes_loaded, lines_loaded, prefix_sha256, file_size, origin_id, rel, file_time,
                                    tick_days)
VALUES (%(file)s, %(kind)s, %(bytes)s, %(lines)s, %(sha)s, %(size)s, %(origin)s, %(rel)s, %(file_time)s,
        NULLIF(%(days)s::date[], '{}'))
ON CONFLICT (source_file) DO UPDATE SET
    bytes_loaded = EXCLUDED.bytes_loaded, lines_loaded = EXCLUDED.lines_loaded, prefix_sha256 = EXCLUDED.prefix_sha256,
    file_size = EXCLUDED.file_size, origin_id = COALESCE(EXCLUDED.origin_id, jsonl_file_checkpoints.origin_id),
    rel = EXCLUDED.rel, file_time = EXCLUDED.file_time, must_reload = NULL, updated_at = now(),
    tick_days = CASE WHEN cardinality(%(days)s::date[]) = 0 THEN jsonl_file_checkpoints.tick_days
                     ELSE ARRAY(SELECT DISTINCT d FROM unnest(coalesce(jsonl_file_checkpoints.tick_days, '{}') || %(days)s::date[]) d
                                ORDER BY d) END
