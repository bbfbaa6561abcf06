-- The machinery out of the data's schema: runs, budgets, checkpoints, copies, versions, rejects,
-- fetch records and the partitions behind the partitioned tables move to a schema of their own
-- (backfill_internal beside public; S_internal beside another schema S: tasks/core/schemas.py), so a
-- catalog browser lists the data alone. Our connections keep both on their search path; views and
-- statements find the moved tables as before (a view holds its tables, not their names). Moving a
-- table is a change of the catalog only: no row is rewritten, whatever the table holds.
-- (The migrations table itself is moved by migrate() before any migration runs.)
DO $$
DECLARE
    data     text := current_schema();
    internal text := CASE WHEN current_schema() = 'public' THEN 'backfill_internal' ELSE current_schema() || '_internal' END;
    moved    text;
BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', internal);
    EXECUTE format('COMMENT ON SCHEMA %I IS %L', internal,
                   'market-backfill''s machinery (runs, rate budgets, checkpoints, partitions): read it, do not write it. '
                   'The data is in schema ' || data || '.');
    FOREACH moved IN ARRAY ARRAY[
        'backfill_runs', 'backfill_run_items', 'rate_budgets', 'jsonl_file_checkpoints', 'jsonl_origins', 'jsonl_rejects',
        'partition_moves', 'price_fetch_coverage', 'price_changes', 'shares_outstanding_fetches', 'scalp_tick_copies',
        'swing_bar_versions', 'intraday_sessions_fetched', 'intraday_split_restatements',
        'scalp_ticks_unpartitioned', 'scalp_1m_bars_unpartitioned']  -- the sources of an upgrade 017 move not finished
    LOOP
        IF to_regclass(format('%I.%I', data, moved)) IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', data, moved, internal);
        END IF;
    END LOOP;
    -- The day and month partitions, attached or left detached by a killed retention run.
    FOR moved IN
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = data AND c.relkind = 'r'
          AND c.relname ~ '^(scalp_ticks_p[0-9]{8}|scalp_1m_bars_p[0-9]{8}|collected_intraday_bars_p[0-9]{6})$'
    LOOP
        EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', data, moved, internal);
    END LOOP;
END
$$;
