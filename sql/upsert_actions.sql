INSERT INTO dividends_and_splits (ticker, ex_date, kind, value)
SELECT %(ticker)s, unnest(%(ex_dates)s::date[]), unnest(%(kinds)s::text[]), unnest(%(values)s::double precision[])
ON CONFLICT (ticker, ex_date, kind) DO UPDATE SET value = EXCLUDED.value, run_id = coalesce(EXCLUDED.run_id, dividends_and_splits.run_id)
WHERE dividends_and_splits.value IS DISTINCT FROM EXCLUDED.value
RETURNING (xmax = 0) AS inserted
