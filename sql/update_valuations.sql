UPDATE events AS e SET
    base_date = s.base_date, price_at_event = s.price_at_event,
    ret_1d = s.ret_1d, ret_5d = s.ret_5d, ret_20d = s.ret_20d,
    excess_ret_1d = s.excess_ret_1d, excess_ret_5d = s.excess_ret_5d, excess_ret_20d = s.excess_ret_20d,
    momentum_20d = s.momentum_20d, volatility_20d = s.volatility_20d, volume_ratio = s.volume_ratio,
    reaction = s.reaction, trend = s.trend, valuation_status = s.valuation_status,
    valuation_error = s.valuation_error, valued_at = now(),
    run_id = coalesce(nullif(current_setting('market_backfill.run_id', true), '')::bigint, e.run_id)
FROM stage_valuations AS s
WHERE e.event_id = s.event_id
