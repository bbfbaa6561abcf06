-- Events to value (imported from CSV) and the metrics written back by the event valuation flow.
CREATE TABLE IF NOT EXISTS txn_events (
    event_id         bigserial        PRIMARY KEY,
    ticker           text             NOT NULL,
    event_time       timestamptz      NOT NULL,
    source           text             NOT NULL DEFAULT '',
    imported_at      timestamptz      NOT NULL DEFAULT now(),
    base_date        date,
    price_at_event   double precision,
    ret_1d           double precision,
    ret_5d           double precision,
    ret_20d          double precision,
    excess_ret_1d    double precision,
    excess_ret_5d    double precision,
    excess_ret_20d   double precision,
    momentum_20d     double precision,
    volatility_20d   double precision,
    volume_ratio     double precision,
    reaction         text CHECK (reaction IN ('positive', 'negative', 'neutral')),
    trend            text CHECK (trend IN ('up', 'down', 'flat')),
    valuation_status text CHECK (valuation_status IN ('ok', 'no_data', 'error')),
    valuation_error  text,
    valued_at        timestamptz,
    UNIQUE (ticker, event_time, source)
) WITH (fillfactor = 70);
-- No index on the metric columns, on purpose: a valuation then updates no indexed column, so
-- PostgreSQL can update rows in place (HOT, helped by the fillfactor) without touching an index.
-- Lookups by ticker use the unique index (ticker is its leading column).

-- Date ranges already fetched from the source per ticker and table, so reruns never refetch
-- a range (even where the source had no bar for some session: halts, listings).
CREATE TABLE IF NOT EXISTS price_fetch_coverage (
    table_name  text        NOT NULL,
    ticker      text        NOT NULL,
    start_date  date        NOT NULL,
    end_date    date        NOT NULL,
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, ticker, start_date, end_date)
);
