CREATE TEMP TABLE stage_scalp (
    symbol text, event_time timestamptz, ts timestamptz, bid_price numeric, ask_price numeric, bid_size bigint,
    ask_size bigint, last_price numeric, volume bigint, session_id text, mitigation_level int, quality_flag text, source_line int
) ON COMMIT DROP
