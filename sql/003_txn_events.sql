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
);
-- The valuation's selection: events never valued, failed, or valued before their forward bars existed.
CREATE INDEX IF NOT EXISTS txn_events_ticker ON txn_events (ticker);
CREATE INDEX IF NOT EXISTS txn_events_pending ON txn_events (ticker)
    WHERE valuation_status IS NULL OR valuation_status <> 'ok' OR ret_20d IS NULL OR excess_ret_20d IS NULL OR volume_ratio IS NULL;

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
