-- Before a scalp file's ticks on lines after+1..upto are removed: each of them that another line
-- also carries (another file's, or this file's outside the range) passes to that line (the first
-- copy by file, then line), which stops being a copy.
WITH heirs AS (
    SELECT DISTINCT ON (c.tick_key) c.tick_key, c.source_file, c.source_line
    FROM scalp_tick_copies c
    JOIN observer_ticks t ON t.tick_key = c.tick_key AND t.source_file = %(file)s
                      AND t.source_line > %(after)s AND t.source_line <= %(upto)s
    WHERE NOT (c.source_file = %(file)s AND c.source_line > %(after)s AND c.source_line <= %(upto)s)
    ORDER BY c.tick_key, c.source_file, c.source_line
), moved AS (
    UPDATE observer_ticks t SET source_file = h.source_file, source_line = h.source_line
    FROM heirs h WHERE t.tick_key = h.tick_key
    RETURNING h.source_file, h.source_line
)
DELETE FROM scalp_tick_copies c USING moved m WHERE c.source_file = m.source_file AND c.source_line = m.source_line
