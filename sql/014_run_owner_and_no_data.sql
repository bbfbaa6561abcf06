-- Which database session runs a backfill run, so that a run whose process was killed (kill -9, a
-- machine that died) is found out: its session is gone from pg_stat_activity while its row still
-- says 'running'. The next run of any backfill marks such rows 'crashed' (tasks/core/runs.py), and
-- --resume treats them as interrupted.
ALTER TABLE backfill_runs ADD COLUMN IF NOT EXISTS backend_pid integer;
ALTER TABLE backfill_runs ADD COLUMN IF NOT EXISTS backend_start timestamptz;
ALTER TABLE backfill_runs DROP CONSTRAINT IF EXISTS backfill_runs_status_check;
ALTER TABLE backfill_runs ADD CONSTRAINT backfill_runs_status_check
    CHECK (status IN ('running', 'done', 'failed', 'rate_limited', 'interrupted', 'crashed'));

-- A ticker the source has no data for (unknown, delisted, nothing in the range) has a status of its
-- own: reported, never a failure by itself.
ALTER TABLE backfill_run_items DROP CONSTRAINT IF EXISTS backfill_run_items_status_check;
ALTER TABLE backfill_run_items ADD CONSTRAINT backfill_run_items_status_check
    CHECK (status IN ('pending', 'done', 'failed', 'skipped', 'no_data'));
