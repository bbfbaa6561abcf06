CREATE TEMP TABLE stage_valuations (
    event_id bigint, base_date date, price_at_event double precision,
    ret_1d double precision, ret_5d double precision, ret_20d double precision,
    excess_ret_1d double precision, excess_ret_5d double precision, excess_ret_20d double precision,
    momentum_20d double precision, volatility_20d double precision, volume_ratio double precision,
    reaction text, trend text, valuation_status text, valuation_error text
) ON COMMIT DROP
