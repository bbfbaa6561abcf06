-- The daily pipeline's tables: sector ETF holdings, sector rankings, and the portfolio.
-- Each stage replaces its rows for one as_of_date in one transaction, so a rerun gives the same rows.

CREATE TABLE IF NOT EXISTS collected_meta_etf (
    etf           text             NOT NULL,
    as_of_date    date             NOT NULL,
    holding       text             NOT NULL,
    holding_name  text,
    weight        double precision NOT NULL CHECK (weight >= 0),  -- fraction of the fund (0.21 = 21%)
    fetched_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (etf, as_of_date, holding)
);

CREATE TABLE IF NOT EXISTS analytics_trending_sectors (
    as_of_date       date             NOT NULL,
    ticker           text             NOT NULL,
    "window"         integer          NOT NULL,  -- sessions: 5, 10 or 20
    relative_return  double precision NOT NULL,  -- the ETF's return over the window minus SPY's
    rank             integer          NOT NULL,  -- 1 = strongest within (as_of_date, window)
    computed_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of_date, ticker, "window")
);

CREATE TABLE IF NOT EXISTS analytics_portfolio_allocation (
    as_of_date   date             NOT NULL,
    ticker       text             NOT NULL,
    sector_etf   text             NOT NULL,
    market_cap   double precision NOT NULL CHECK (market_cap > 0),
    weight       double precision NOT NULL CHECK (weight > 0 AND weight <= 1),
    computed_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of_date, ticker)
);
