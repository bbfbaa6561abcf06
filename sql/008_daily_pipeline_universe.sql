-- The daily pipeline as its source document describes it: a benchmark table (SPY, QQQ), every
-- constituent of the sector funds with the shares the fund holds, rankings stored with their
-- inputs, trending stocks, shares-outstanding history for point-in-time market caps, and the
-- document's column name portfolio_weight.

CREATE TABLE IF NOT EXISTS collected_daily_benchmark_ohlc (LIKE collected_daily_etf_ohlc INCLUDING ALL);

-- Holdings: where each snapshot came from ('ssga' = the sponsor's daily file, 'yahoo' = Yahoo's top
-- holdings, the fallback), the symbol as the sponsor spells it (BRK.B where Yahoo says BRK-B), and
-- the shares the fund holds (NULL from Yahoo, which does not say).
ALTER TABLE collected_meta_etf ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'yahoo';
ALTER TABLE collected_meta_etf ADD COLUMN IF NOT EXISTS sponsor_symbol text;
ALTER TABLE collected_meta_etf ADD COLUMN IF NOT EXISTS shares_held double precision CHECK (shares_held >= 0);

-- A ranking's inputs: the window's first session and the prices and returns it was computed from.
ALTER TABLE analytics_trending_sectors ADD COLUMN IF NOT EXISTS start_date date;
ALTER TABLE analytics_trending_sectors ADD COLUMN IF NOT EXISTS start_adj_close double precision;
ALTER TABLE analytics_trending_sectors ADD COLUMN IF NOT EXISTS end_adj_close double precision;
ALTER TABLE analytics_trending_sectors ADD COLUMN IF NOT EXISTS own_return double precision;
ALTER TABLE analytics_trending_sectors ADD COLUMN IF NOT EXISTS benchmark_return double precision;

CREATE TABLE IF NOT EXISTS analytics_trending_stocks (
    as_of_date        date             NOT NULL,
    ticker            text             NOT NULL,
    sector_etf        text             NOT NULL,  -- the top sector it was ranked in
    "window"          integer          NOT NULL,  -- sessions: 5, 10 or 20
    start_date        date             NOT NULL,
    start_adj_close   double precision NOT NULL,
    end_adj_close     double precision NOT NULL,
    own_return        double precision NOT NULL,
    benchmark_return  double precision NOT NULL,  -- SPY over the same sessions
    relative_return   double precision NOT NULL,
    rank              integer          NOT NULL,  -- 1 = strongest within (as_of_date, sector_etf, window)
    computed_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of_date, ticker, "window")
);

-- Shares outstanding as Yahoo reports them over time: a past as-of date is weighted by the figure
-- known then, never today's. fetched_through: the as-of date the last fetch covered.
CREATE TABLE IF NOT EXISTS collected_shares_outstanding (
    ticker       text             NOT NULL,
    observed_on  date             NOT NULL,
    shares       double precision NOT NULL CHECK (shares > 0),
    fetched_at   timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, observed_on)
);
CREATE TABLE IF NOT EXISTS shares_outstanding_fetches (
    ticker           text        PRIMARY KEY,
    fetched_through  date        NOT NULL,
    fetched_at       timestamptz NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_name = 'analytics_portfolio_allocation' AND column_name = 'weight') THEN
        ALTER TABLE analytics_portfolio_allocation RENAME COLUMN weight TO portfolio_weight;
    END IF;
END $$;
ALTER TABLE analytics_portfolio_allocation ADD COLUMN IF NOT EXISTS shares_outstanding double precision;
ALTER TABLE analytics_portfolio_allocation ADD COLUMN IF NOT EXISTS shares_as_of date;
ALTER TABLE analytics_portfolio_allocation ADD COLUMN IF NOT EXISTS close double precision;
ALTER TABLE analytics_portfolio_allocation ADD COLUMN IF NOT EXISTS price_date date;

-- Retention deletes by time in batches: these keep each batch an index range scan.
CREATE INDEX IF NOT EXISTS jsonl_rejects_time ON jsonl_rejects (rejected_at);
CREATE INDEX IF NOT EXISTS price_changes_time ON price_changes (changed_at);
CREATE INDEX IF NOT EXISTS scalp_1m_bars_time ON scalp_1m_bars (bar_time);
