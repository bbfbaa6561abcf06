-- Daily OHLCV bars: ETFs (benchmark + sectors) and single stocks share one shape.
CREATE TABLE IF NOT EXISTS collected_daily_etf_ohlc (
    ticker      text             NOT NULL,
    trade_date  date             NOT NULL,
    open        double precision,
    high        double precision,
    low         double precision,
    close       double precision NOT NULL,
    adj_close   double precision,
    volume      bigint,
    source      text             NOT NULL DEFAULT 'yahoo',
    fetched_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, trade_date)
);

CREATE TABLE IF NOT EXISTS collected_daily_stock_history (LIKE collected_daily_etf_ohlc INCLUDING ALL);

-- Splits and dividends seen in fetched data, kept so adjusted history can be refreshed.
CREATE TABLE IF NOT EXISTS corporate_actions (
    ticker      text             NOT NULL,
    ex_date     date             NOT NULL,
    kind        text             NOT NULL CHECK (kind IN ('dividend', 'split')),
    value       double precision NOT NULL,
    first_seen  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, ex_date, kind)
);
