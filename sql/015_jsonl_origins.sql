-- Where a JSONL file comes from, so files of the same name under two roots (two observers, two
-- hosts) are two files: an origin is a host and the absolute folder a kind's files were found in.
-- A checkpoint records its file's origin and path under it (rel, e.g. scalp/20260122_0100.jsonl);
-- its key (source_file, the provenance in every table) is rel for the first origin that loads a
-- path and "<origin id>:<rel>" for any other. Checkpoints written before this migration have no
-- origin yet: the first origin to present their path takes them over (no row is rewritten).
CREATE TABLE IF NOT EXISTS jsonl_origins (
    id          serial      PRIMARY KEY,
    host        text        NOT NULL,
    folder      text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (host, folder)
);
ALTER TABLE jsonl_file_checkpoints
    ADD COLUMN IF NOT EXISTS origin_id   int REFERENCES jsonl_origins (id),
    ADD COLUMN IF NOT EXISTS rel         text,
    -- The time in the file's name (YYYYMMDD_HHMM, gap_YYYYMMDD): which file's version of a swing
    -- bar wins is decided by it (then the line), not by how the paths sort.
    ADD COLUMN IF NOT EXISTS file_time   timestamp,
    -- Why the next run must load the file again from its start (NULL: it need not).
    ADD COLUMN IF NOT EXISTS must_reload text;
UPDATE jsonl_file_checkpoints SET rel = source_file WHERE rel IS NULL;
CREATE INDEX IF NOT EXISTS jsonl_file_checkpoints_rel ON jsonl_file_checkpoints (rel);
DO $$
DECLARE
    cp record;
    stamp text;
BEGIN
    FOR cp IN SELECT source_file FROM jsonl_file_checkpoints WHERE file_time IS NULL LOOP
        stamp := substring(cp.source_file FROM '(\d{8}_\d{4})\.jsonl$');
        IF stamp IS NULL THEN
            stamp := substring(cp.source_file FROM 'gap_(\d{8})\.jsonl$') || '_0000';
        END IF;
        CONTINUE WHEN stamp IS NULL;
        BEGIN
            UPDATE jsonl_file_checkpoints SET file_time = to_timestamp(stamp, 'YYYYMMDD_HH24MI')::timestamp
            WHERE source_file = cp.source_file;
        EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
            NULL;  -- not a time (20261399_0000): the file sorts before every dated one, as a new load has it
        END;
    END LOOP;
END
$$;
-- Migration 010 seeded swing_bar_versions with the winning bars only: a swing file loaded before it
-- whose bars another file had won has no versions, and a later rewrite of the winner lost those
-- bars. Such files load again, which gives them their versions (as a fresh load has them).
UPDATE jsonl_file_checkpoints c
SET must_reload = 'its bar versions were not recorded before the upgrade (migration 010)'
WHERE c.kind = 'swing'
  AND c.lines_loaded > (SELECT count(*) FROM swing_bar_versions v WHERE v.source_file = c.source_file)
                     + (SELECT count(*) FROM jsonl_rejects r WHERE r.source_file = c.source_file);
