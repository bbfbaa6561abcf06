-- Reserve the next request slot of a budget, unless it is cooling down after a 429 or its daily
-- quota is spent (then no row comes back). Every SET expression sees the row as it was.
-- Returns the seconds until the slot and the slot's time (the database's clock, seconds since 1970).
UPDATE rate_budgets AS b SET
    last_slot = greatest(b.next_slot, clock_timestamp()),
    next_slot = greatest(b.next_slot, clock_timestamp()) + make_interval(secs => 60.0 / least(b.rate_per_min, %(ceiling)s)),
    granted = b.granted + 1,
    streak = CASE WHEN b.streak + 1 >= %(climb_after)s THEN 0 ELSE b.streak + 1 END,
    rate_per_min = CASE WHEN b.streak + 1 >= %(climb_after)s THEN least(%(ceiling)s, b.rate_per_min * %(climb_factor)s)
                        ELSE least(b.rate_per_min, %(ceiling)s) END,
    day = (clock_timestamp() AT TIME ZONE 'UTC')::date,
    day_count = CASE WHEN b.day = (clock_timestamp() AT TIME ZONE 'UTC')::date THEN b.day_count + 1 ELSE 1 END,
    updated_at = clock_timestamp()
WHERE b.name = %(name)s
  AND (b.cooldown_until IS NULL OR b.cooldown_until <= clock_timestamp())
  AND (%(daily_cap)s::bigint IS NULL OR b.day IS DISTINCT FROM (clock_timestamp() AT TIME ZONE 'UTC')::date
       OR b.day_count < %(daily_cap)s::bigint)
RETURNING greatest(0, extract(epoch FROM b.last_slot - clock_timestamp()))::double precision,
          extract(epoch FROM b.last_slot)::double precision
