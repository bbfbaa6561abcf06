SELECT rate_per_min, ceiling_per_min,
       greatest(0, coalesce(extract(epoch FROM cooldown_until - clock_timestamp()), 0))::double precision,
       granted, limited,
       CASE WHEN day = (clock_timestamp() AT TIME ZONE 'UTC')::date THEN day_count ELSE 0 END
FROM rate_budgets WHERE name = %(name)s
