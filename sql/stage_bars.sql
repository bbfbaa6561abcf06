CREATE TEMP TABLE stage_bars (
    ticker text, trade_date date, open double precision, high double precision,
    low double precision, close double precision, adj_close double precision, volume bigint
) ON COMMIT DROP
