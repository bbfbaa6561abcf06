-- A 429: cool the budget down for everyone and halve its rate. A 429 while already cooling (a
-- request that was in flight) only extends the cool-down to its Retry-After; a 429 soon after a
-- cool-down ended means the block outlasted it, so the next cool-down doubles (up to a cap).
WITH cur AS (
    SELECT name, clock_timestamp() AS t,
           coalesce(cooldown_until > clock_timestamp(), false) AS cooling,
           CASE WHEN cooldown_until > clock_timestamp() THEN coalesce(cooldown_s, %(base_s)s)
                WHEN clock_timestamp() < cooldown_until + make_interval(secs => coalesce(cooldown_s, 0))
                     THEN least(%(max_s)s, greatest(%(base_s)s, coalesce(cooldown_s, 0) * 2))
                ELSE %(base_s)s END AS next_cooldown
    FROM rate_budgets WHERE name = %(name)s FOR UPDATE
)
UPDATE rate_budgets AS b SET
    limited = b.limited + 1,
    last_429_at = cur.t,
    streak = 0,
    rate_per_min = CASE WHEN cur.cooling THEN b.rate_per_min ELSE greatest(%(floor)s, b.rate_per_min * %(backoff_factor)s) END,
    cooldown_s = cur.next_cooldown,
    cooldown_until = CASE WHEN cur.cooling THEN greatest(b.cooldown_until, cur.t + make_interval(secs => %(retry_after)s))
                          ELSE cur.t + make_interval(secs => greatest(%(retry_after)s, cur.next_cooldown)) END,
    updated_at = cur.t
FROM cur
WHERE b.name = cur.name
RETURNING greatest(0, extract(epoch FROM b.cooldown_until - clock_timestamp()))::double precision, b.rate_per_min
