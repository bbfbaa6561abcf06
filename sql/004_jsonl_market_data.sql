-- Market data from the JSONL observer files (swing 10-minute polls, scalp 2 Hz ticks, gap ledger).
-- Every row carries its provenance (source_file relative to --root, source_line), unique, so a
-- file loaded twice never duplicates anything.
CREATE TABLE IF NOT EXISTS swing_bars_10m (
    symbol           varchar(20)   NOT NULL,
    bar_time         timestamptz   NOT NULL,
    open             numeric(15,4),
    high             numeric(15,4),
    low              numeric(15,4),
    close            numeric(15,4),
    volume           bigint,
    bid_price        numeric(15,4),
    ask_price        numeric(15,4),
    session_id       varchar(50)   NOT NULL,
    dataset          varchar(50),
    market           varchar(50),
    source           varchar(50),
    schema_version   varchar(10)   DEFAULT '1.0',
    mitigation_level int           DEFAULT 0,
    quality_flag     varchar(20)   DEFAULT 'normal',
    source_file      text          NOT NULL,
    source_line      integer       NOT NULL,
    PRIMARY KEY (symbol, bar_time),
    UNIQUE (source_file, source_line)
);
CREATE INDEX IF NOT EXISTS idx_swing_10m_session ON swing_bars_10m (session_id);
CREATE INDEX IF NOT EXISTS idx_swing_10m_time ON swing_bars_10m (bar_time DESC);

CREATE TABLE IF NOT EXISTS scalp_ticks (
    id               bigserial     PRIMARY KEY,
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
    UNIQUE (source_file, source_line)
);
CREATE INDEX IF NOT EXISTS idx_scalp_ticks_symbol_time ON scalp_ticks (symbol, event_time);
CREATE INDEX IF NOT EXISTS idx_scalp_ticks_session ON scalp_ticks (session_id);

-- Aggregated from scalp_ticks per symbol and minute; recomputed for the minutes a load touched.
CREATE TABLE IF NOT EXISTS scalp_1m_bars (
    symbol           varchar(20)   NOT NULL,
    bar_time         timestamptz   NOT NULL,
    open             numeric(15,4),
    high             numeric(15,4),
    low              numeric(15,4),
    close            numeric(15,4),
    volume           bigint,
    tick_count       integer       NOT NULL,
    coverage_ratio   double precision NOT NULL,   -- ticks in the minute / 120 (2 Hz)
    session_id       varchar(50)   NOT NULL,
    schema_version   varchar(10)   DEFAULT '1.0',
    mitigation_level int           DEFAULT 0,
    quality_flag     varchar(20)   DEFAULT 'normal',
    -- which tick set open and close (time, then file and line break ties), so a batch's bar
    -- can be merged into the stored one without rereading the minute's ticks
    open_time        timestamptz   NOT NULL,
    open_file        text          NOT NULL,
    open_line        integer       NOT NULL,
    close_time       timestamptz   NOT NULL,
    close_file       text          NOT NULL,
    close_line       integer       NOT NULL,
    PRIMARY KEY (symbol, bar_time)
);
CREATE INDEX IF NOT EXISTS idx_scalp_1m_bars_session ON scalp_1m_bars (session_id);

CREATE TABLE IF NOT EXISTS scalp_gaps (
    id               serial        PRIMARY KEY,
    logged_at        timestamptz,
    gap_start_ts     timestamptz   NOT NULL,
    gap_end_ts       timestamptz   NOT NULL,
    gap_seconds      double precision NOT NULL,
    scope            varchar(20),
    reason           varchar(100),
    session_id       varchar(50)   NOT NULL,
    source_file      text          NOT NULL,
    source_line      integer       NOT NULL,
    UNIQUE (source_file, source_line)
);
CREATE INDEX IF NOT EXISTS idx_scalp_gaps_session ON scalp_gaps (session_id);
CREATE INDEX IF NOT EXISTS idx_scalp_gaps_time ON scalp_gaps (gap_start_ts);

-- Lines that could not be loaded, with the reason; the rest of the file loads.
CREATE TABLE IF NOT EXISTS jsonl_rejects (
    source_file  text        NOT NULL,
    source_line  integer     NOT NULL,
    reason       text        NOT NULL,
    raw          text,
    rejected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_file, source_line)
);

-- Per-file checkpoint, committed with each batch: how far the file is loaded and the SHA-256
-- of that prefix (to tell an appended file from a rewritten one).
CREATE TABLE IF NOT EXISTS jsonl_file_checkpoints (
    source_file   text        PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('swing', 'scalp', 'gap')),
    bytes_loaded  bigint      NOT NULL,
    lines_loaded  integer     NOT NULL,
    prefix_sha256 text        NOT NULL,
    file_size     bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

