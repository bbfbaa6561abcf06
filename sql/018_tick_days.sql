-- The UTC days each scalp file stored ticks on. A day partition of scalp_ticks that is missing
-- while a file's checkpoint still names its day was dropped or detached by hand (retention takes
-- its days out of these lists before it drops them): the next load notices it, attaches a detached
-- one again, or loads the files of that day again (tasks/jsonl/lost_days.py).
ALTER TABLE jsonl_file_checkpoints ADD COLUMN IF NOT EXISTS tick_days date[];

DO $$
DECLARE
    ticks text := 'SELECT source_file, event_time FROM scalp_ticks';
BEGIN
    IF to_regclass('scalp_ticks_unpartitioned') IS NOT NULL THEN  -- a move into day partitions not finished yet
        ticks := ticks || ' UNION ALL SELECT source_file, event_time FROM scalp_ticks_unpartitioned';
    END IF;
    EXECUTE 'UPDATE jsonl_file_checkpoints c SET tick_days = d.days'
         || ' FROM (SELECT source_file, array_agg(day ORDER BY day) AS days FROM (SELECT DISTINCT source_file,'
         || ' (event_time AT TIME ZONE ''UTC'')::date AS day FROM (' || ticks || ') t) s GROUP BY source_file) d'
         || ' WHERE d.source_file = c.source_file';
END $$;
