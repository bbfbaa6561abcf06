-- Before an event whose base session comes after the last usable one was made to wait (unvalued),
-- it was valued against the last bar there was: a far-future event got today's bar ('ok' with a
-- base_date long before the event), and the next run could turn it 'no_data'. Such valuations are
-- forgotten, so the next run values the event against its own base session, or leaves it waiting.
-- A real base session is at most 4 calendar days before the event's New York date (a weekend and
-- a holiday); 5 leaves room. An event found 'no_data' before it even happened is retried too.
UPDATE txn_events
SET base_date = NULL, price_at_event = NULL, ret_1d = NULL, ret_5d = NULL, ret_20d = NULL,
    excess_ret_1d = NULL, excess_ret_5d = NULL, excess_ret_20d = NULL, momentum_20d = NULL, volatility_20d = NULL,
    volume_ratio = NULL, reaction = NULL, trend = NULL, valuation_status = NULL, valuation_error = NULL, valued_at = NULL
WHERE (valuation_status IN ('ok', 'no_data') AND base_date < (event_time AT TIME ZONE 'America/New_York')::date - 5)
   OR (valuation_status = 'no_data' AND valued_at < event_time);
