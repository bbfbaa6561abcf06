CREATE TEMP TABLE stage_intraday (
    ticker text, bar_epoch bigint, session date, regular bigint, open double precision, high double precision,
    low double precision, close double precision, volume bigint, repaired bigint
) ON COMMIT DROP
