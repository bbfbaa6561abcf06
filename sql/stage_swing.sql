CREATE TEMP TABLE stage_swing (
    symbol text, bar_time timestamptz, open numeric, high numeric, low numeric, close numeric, volume bigint,
    bid_price numeric, ask_price numeric, session_id text, dataset text, market text, source text, source_line int
) ON COMMIT DROP
