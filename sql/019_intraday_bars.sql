-- Intraday bars (backfill --interval 1m .. 1h): one row per ticker, interval and bar start (UTC),
-- as Yahoo served it. Partitioned by month of the bar start (collected_intraday_bars_p202611, made
-- on demand): a range query reads only its months, and old months can be dropped whole.
-- regular is false for a pre- or post-market bar (stored only with --prepost).
CREATE TABLE IF NOT EXISTS collected_intraday_bars (
    ticker      text          NOT NULL,
    interval    text          NOT NULL CHECK (interval IN ('1m', '2m', '5m', '15m', '30m', '90m', '1h')),
    bar_start   timestamptz   NOT NULL,
    session     date          NOT NULL,
    regular     boolean       NOT NULL,
    open        double precision,
    high        double precision,
    low         double precision,
    close       double precision,
    volume      bigint,
    source      text          NOT NULL DEFAULT 'yahoo',
    fetched_at  timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, interval, bar_start)
) PARTITION BY RANGE (bar_start);

-- The sessions a run fetched whole for a ticker and interval (after the session closed): the plan
-- skips them, whether Yahoo had a bar for every slot or not (a thinly traded stock has minutes
-- without a trade, and so without a bar). prepost: fetched with pre- and post-market bars.
CREATE TABLE IF NOT EXISTS intraday_sessions_fetched (
    ticker      text        NOT NULL,
    interval    text        NOT NULL,
    session     date        NOT NULL,
    prepost     boolean     NOT NULL,
    bars        integer     NOT NULL,
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, interval, session, prepost)
);
