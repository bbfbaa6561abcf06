-- The observer's tables in the naming convention of 035 (tables by domain and grain, `ticker`, `_at`):
-- scalp_ticks, scalp_1m_bars, swing_bars_10m and scalp_gaps carried the observer's field names
-- (symbol, event_time, ts, bar_time, gap_start_ts). Changes of the catalog only, as in 035: the old
-- names stay for one release as automatically updatable views under the old table and column names;
-- the day partitions (in the machinery's schema, attached or left detached) and the indexes and
-- sequences named after a table take its new name. An index's column names stay as they were made,
-- and PostgreSQL names a new partition's indexes by them (observer_ticks_p20260122_tick_key_event_time_key),
-- so those parts of the names stay. A move into day partitions that an upgrade 017 left unfinished
-- goes on into the renamed tables.

ALTER TABLE scalp_ticks RENAME TO observer_ticks;
CREATE VIEW scalp_ticks AS SELECT * FROM observer_ticks;
ALTER TABLE observer_ticks RENAME COLUMN symbol TO ticker;
ALTER TABLE observer_ticks RENAME COLUMN event_time TO event_at;
ALTER TABLE observer_ticks RENAME COLUMN ts TO written_at;
ALTER TABLE observer_ticks RENAME COLUMN receive_time TO loaded_at;

ALTER TABLE scalp_1m_bars RENAME TO observer_bars_1m;
CREATE VIEW scalp_1m_bars AS SELECT * FROM observer_bars_1m;
ALTER TABLE observer_bars_1m RENAME COLUMN symbol TO ticker;
ALTER TABLE observer_bars_1m RENAME COLUMN bar_time TO bar_start_at;
ALTER TABLE observer_bars_1m RENAME COLUMN open_time TO open_tick_at;
ALTER TABLE observer_bars_1m RENAME COLUMN close_time TO close_tick_at;

ALTER TABLE swing_bars_10m RENAME TO observer_bars_10m;
CREATE VIEW swing_bars_10m AS SELECT * FROM observer_bars_10m;
ALTER TABLE observer_bars_10m RENAME COLUMN symbol TO ticker;
ALTER TABLE observer_bars_10m RENAME COLUMN bar_time TO polled_at;

ALTER TABLE scalp_gaps RENAME TO observer_gaps;
CREATE VIEW scalp_gaps AS SELECT * FROM observer_gaps;
ALTER TABLE observer_gaps RENAME COLUMN gap_start_ts TO gap_start_at;
ALTER TABLE observer_gaps RENAME COLUMN gap_end_ts TO gap_end_at;

DO $$
DECLARE
    data     text := current_schema();
    internal text := CASE WHEN current_schema() = 'public' THEN 'backfill_internal' ELSE current_schema() || '_internal' END;
    pair     text[];
    target   record;
    renamed  text;
BEGIN
    -- The sources of an unfinished upgrade-017 move: their columns as the tables' now (the move copies by name).
    FOREACH pair SLICE 1 IN ARRAY ARRAY[['scalp_ticks_unpartitioned', 'symbol', 'ticker'],
                                        ['scalp_ticks_unpartitioned', 'event_time', 'event_at'],
                                        ['scalp_ticks_unpartitioned', 'ts', 'written_at'],
                                        ['scalp_ticks_unpartitioned', 'receive_time', 'loaded_at'],
                                        ['scalp_1m_bars_unpartitioned', 'symbol', 'ticker'],
                                        ['scalp_1m_bars_unpartitioned', 'bar_time', 'bar_start_at'],
                                        ['scalp_1m_bars_unpartitioned', 'open_time', 'open_tick_at'],
                                        ['scalp_1m_bars_unpartitioned', 'close_time', 'close_tick_at']]
    LOOP
        FOR target IN SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = pair[2] AND NOT a.attisdropped
                      WHERE c.relname = pair[1] AND n.nspname IN (data, internal)
        LOOP
            EXECUTE format('ALTER TABLE %I.%I RENAME COLUMN %I TO %I', target.nspname, pair[1], pair[2], pair[3]);
        END LOOP;
    END LOOP;
    IF to_regclass(format('%I.partition_moves', internal)) IS NOT NULL THEN
        EXECUTE format('UPDATE %I.partition_moves SET table_name = CASE table_name WHEN %L THEN %L ELSE %L END'
                       ' WHERE table_name IN (%L, %L)', internal, 'scalp_ticks', 'observer_ticks', 'observer_bars_1m',
                       'scalp_ticks', 'scalp_1m_bars');
    END IF;

    -- The day partitions and every index and sequence named after a table.
    FOR target IN
        SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname IN (data, internal) AND c.relkind IN ('r', 'i', 'I', 'S')
          AND c.relname ~ '(scalp_ticks|scalp_1m_bars|swing_bars_10m|swing_10m|scalp_gaps)'
          AND c.relname !~ '^(scalp_ticks|scalp_1m_bars)_unpartitioned'
          AND c.relname !~ '^scalp_tick_copies'
    LOOP
        renamed := regexp_replace(regexp_replace(regexp_replace(regexp_replace(target.relname, 'scalp_ticks', 'observer_ticks'),
                       'scalp_1m_bars', 'observer_bars_1m'), 'swing_(bars_)?10m', 'observer_bars_10m'), 'scalp_gaps', 'observer_gaps');
        IF renamed <> target.relname THEN
            EXECUTE format('ALTER %s %I.%I RENAME TO %I',
                           CASE target.relkind WHEN 'r' THEN 'TABLE' WHEN 'S' THEN 'SEQUENCE' ELSE 'INDEX' END,
                           target.nspname, target.relname, renamed);
        END IF;
    END LOOP;
    FOR target IN
        SELECT c.conrelid::regclass AS owner, c.conname, a.attname FROM pg_constraint c
        LEFT JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        WHERE c.contype IN ('c', 'n') AND c.conrelid IN (to_regclass('observer_ticks'), to_regclass('observer_bars_1m'),
                                                         to_regclass('observer_bars_10m'), to_regclass('observer_gaps'))
    LOOP  -- the partitions' copies follow (a rename recurses)
        renamed := CASE WHEN target.conname ~ '_not_null$'
                        THEN regexp_replace(target.owner::text, '^.*\.', '') || '_' || target.attname || '_not_null'
                        ELSE regexp_replace(regexp_replace(target.conname, 'scalp_ticks', 'observer_ticks'), 'scalp_1m_bars',
                                            'observer_bars_1m') END;
        IF renamed <> target.conname THEN
            EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', target.owner, target.conname, renamed);
        END IF;
    END LOOP;
END $$;

-- What the old names are, in the catalog.
COMMENT ON VIEW scalp_ticks IS 'Deprecated (dropped in the next release): the old name of observer_ticks (symbol: ticker, event_time: event_at, ts: written_at, receive_time: loaded_at).';
COMMENT ON VIEW scalp_1m_bars IS 'Deprecated (dropped in the next release): the old name of observer_bars_1m (symbol: ticker, bar_time: bar_start_at, open_time: open_tick_at, close_time: close_tick_at).';
COMMENT ON VIEW swing_bars_10m IS 'Deprecated (dropped in the next release): the old name of observer_bars_10m (symbol: ticker, bar_time: polled_at).';
COMMENT ON VIEW scalp_gaps IS 'Deprecated (dropped in the next release): the old name of observer_gaps (gap_start_ts: gap_start_at, gap_end_ts: gap_end_at).';

-- The comments that named an old name, in the new ones.
COMMENT ON TABLE observer_ticks IS 'Ticks from the observer''s scalp JSONL files (jsonl-ingest), each stored once (tick_key) with the file and line that brought it. Partitioned by UTC day of event_at.';
COMMENT ON TABLE observer_bars_1m IS 'One-minute bars aggregated from observer_ticks per ticker and minute, with tick counts and coverage (ticks received / 120). Partitioned by UTC day.';
COMMENT ON COLUMN observer_ticks.ticker IS 'The instrument''s code as the observer writes it (005930; the record''s symbol).';
COMMENT ON COLUMN observer_ticks.written_at IS 'When the observer wrote the record (the record''s ts), an instant (a few milliseconds after event_at).';
COMMENT ON COLUMN observer_ticks.tick_key IS 'The tick''s identity: its event time (leading 48 bits, milliseconds) and a hash of its fields, so the same tick in two files is stored once.';
COMMENT ON COLUMN observer_bars_1m.ticker IS 'The instrument''s code as the observer writes it (005930; the record''s symbol).';
COMMENT ON COLUMN observer_bars_1m.open IS 'last_price of the minute''s first tick (by event_at, then file and line).';
COMMENT ON COLUMN observer_bars_1m.open_tick_at IS 'event_at of the tick that set open.';
COMMENT ON COLUMN observer_bars_1m.close_tick_at IS 'event_at of the tick that set close.';
COMMENT ON COLUMN observer_bars_10m.ticker IS 'The instrument''s code as the observer writes it (005930; the record''s symbol).';
COMMENT ON COLUMN observer_bars_10m.polled_at IS 'When the observer polled the bar (the record''s ts), an instant.';

-- The old names, readable by the read-only role as the tables were.
DO $$
DECLARE
    relation text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'market_backfill_reader') THEN
        RETURN;
    END IF;
    FOREACH relation IN ARRAY ARRAY['scalp_ticks', 'scalp_1m_bars', 'swing_bars_10m', 'scalp_gaps']
    LOOP
        EXECUTE format('GRANT SELECT ON %I TO market_backfill_reader', relation);
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'market_backfill_reader not granted the old names: % may not grant here', current_user;
END $$;
