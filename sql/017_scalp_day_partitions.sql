-- Ticks and their 1-minute bars in one partition per UTC day (tasks/jsonl/partitions.py makes
-- them as data arrives), so retention drops whole days and a range query scans only its days.
--
-- This migration only renames and creates: it runs under the schema lock that every command takes,
-- and must not hold it while a big table is copied. A table that holds rows is renamed to
-- <table>_unpartitioned (its indexes dropped: nothing looks rows up in it any more) and recorded
-- in partition_moves; the first command that needs ticks or bars copies it into the partitions
-- in batches, outside this lock, resumable after a kill (tasks/jsonl/upgrade.py), then drops it.
-- Other commands never wait for it. An empty table is simply replaced.
CREATE TABLE IF NOT EXISTS partition_moves (
    table_name   text        PRIMARY KEY,          -- the partitioned table the rows go to
    source       text        NOT NULL,             -- the table they come from
    next_page    bigint      NOT NULL DEFAULT 0,   -- the source's pages before this one are copied
    pages        bigint      NOT NULL,             -- the source's size in pages (it no longer grows)
    rows_moved   bigint      NOT NULL DEFAULT 0,
    rows_guess   bigint      NOT NULL,             -- the planner's row count when the move began
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);

-- The tick ids go on from the same sequence, so a moved tick keeps its id and a new one never reuses one.
ALTER SEQUENCE scalp_ticks_id_seq OWNED BY NONE;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM scalp_ticks) THEN
        ALTER TABLE scalp_ticks RENAME TO scalp_ticks_unpartitioned;
        ALTER TABLE scalp_ticks_unpartitioned ALTER COLUMN id DROP DEFAULT;
        ALTER TABLE scalp_ticks_unpartitioned DROP CONSTRAINT IF EXISTS scalp_ticks_pkey;
        ALTER TABLE scalp_ticks_unpartitioned DROP CONSTRAINT IF EXISTS scalp_ticks_source_file_source_line_key;
        DROP INDEX IF EXISTS scalp_ticks_tick_key, idx_scalp_ticks_symbol_time, idx_scalp_ticks_time,
                             idx_scalp_ticks_session_time, idx_scalp_ticks_session;
        INSERT INTO partition_moves (table_name, source, pages, rows_guess)
        SELECT 'scalp_ticks', 'scalp_ticks_unpartitioned', pg_relation_size('scalp_ticks_unpartitioned')
               / current_setting('block_size')::bigint, greatest(reltuples, 0)::bigint
        FROM pg_class WHERE oid = 'scalp_ticks_unpartitioned'::regclass;
    ELSE
        DROP TABLE scalp_ticks;
    END IF;
    IF EXISTS (SELECT 1 FROM scalp_1m_bars) THEN
        ALTER TABLE scalp_1m_bars RENAME TO scalp_1m_bars_unpartitioned;
        ALTER TABLE scalp_1m_bars_unpartitioned DROP CONSTRAINT IF EXISTS scalp_1m_bars_pkey;
        DROP INDEX IF EXISTS idx_scalp_1m_bars_session;
        INSERT INTO partition_moves (table_name, source, pages, rows_guess)
        SELECT 'scalp_1m_bars', 'scalp_1m_bars_unpartitioned', pg_relation_size('scalp_1m_bars_unpartitioned')
               / current_setting('block_size')::bigint, greatest(reltuples, 0)::bigint
        FROM pg_class WHERE oid = 'scalp_1m_bars_unpartitioned'::regclass;
    ELSE
        DROP TABLE scalp_1m_bars;
    END IF;
END $$;

CREATE TABLE scalp_ticks (
    id               bigint        NOT NULL DEFAULT nextval('scalp_ticks_id_seq'),
    symbol           varchar(20)   NOT NULL,
    event_time       timestamptz   NOT NULL,
    ts               timestamptz,
    bid_price        numeric(15,4),
    ask_price        numeric(15,4),
    bid_size         bigint,
    ask_size         bigint,
    last_price       numeric(15,4),
    volume           bigint,
    session_id       varchar(50)   NOT NULL,
    schema_version   varchar(10)   DEFAULT '1.0',
    receive_time     timestamptz   DEFAULT now(),
    mitigation_level int           DEFAULT 0,
    quality_flag     varchar(20)   DEFAULT 'normal',
    source_file      text          NOT NULL,
    source_line      integer       NOT NULL,
    tick_key         uuid,
    PRIMARY KEY (id, event_time),
    CONSTRAINT scalp_ticks_line UNIQUE (source_file, source_line, event_time),
    -- the tick key starts with the event time, so unique with it is unique alone
    CONSTRAINT scalp_ticks_tick_key UNIQUE (tick_key, event_time)
) PARTITION BY RANGE (event_time);
ALTER SEQUENCE scalp_ticks_id_seq OWNED BY scalp_ticks.id;
CREATE INDEX idx_scalp_ticks_symbol_time ON scalp_ticks (symbol, event_time);
CREATE INDEX idx_scalp_ticks_time ON scalp_ticks (event_time DESC);
CREATE INDEX idx_scalp_ticks_session_time ON scalp_ticks (session_id, event_time);

CREATE TABLE scalp_1m_bars (
    symbol           varchar(20)   NOT NULL,
    bar_time         timestamptz   NOT NULL,
    open             numeric(15,4),
    high             numeric(15,4),
    low              numeric(15,4),
    close            numeric(15,4),
    volume           bigint,
    tick_count       integer       NOT NULL,
    coverage_ratio   double precision NOT NULL,
    session_id       varchar(50)   NOT NULL,
    schema_version   varchar(10)   DEFAULT '1.0',
    mitigation_level int           DEFAULT 0,
    quality_flag     varchar(20)   DEFAULT 'normal',
    open_time        timestamptz   NOT NULL,
    open_file        text          NOT NULL,
    open_line        integer       NOT NULL,
    close_time       timestamptz   NOT NULL,
    close_file       text          NOT NULL,
    close_line       integer       NOT NULL,
    PRIMARY KEY (symbol, bar_time)
) PARTITION BY RANGE (bar_time);
CREATE INDEX idx_scalp_1m_bars_session ON scalp_1m_bars (session_id);
