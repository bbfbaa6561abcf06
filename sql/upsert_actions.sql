INSERT INTO corporate_actions (ticker, ex_date, kind, value)
SELECT %(ticker)s, unnest(%(ex_dates)s::date[]), unnest(%(kinds)s::text[]), unnest(%(values)s::double precision[])
ON CONFLICT (ticker, ex_date, kind) DO UPDATE SET value = EXCLUDED.value, run_id = coalesce(EXCLUDED.run_id, corporate_actions.run_id)
WHERE corporate_actions.value IS DISTINCT FROM EXCLUDED.value
RETURNING (xmax = 0) AS inserted
