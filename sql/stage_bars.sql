CREATE TEMP TABLE stage_bars (
    ticker text, trade_date date, open double precision, high double precision,
    low double precision, close double precision, adj_close double precision, volume bigint,
    repaired bigint  -- 1: changed by yfinance's price repair (NULL: fetched without it)
) ON COMMIT DROP
