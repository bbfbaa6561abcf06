-- Retention: a table's fetched-range records (price_fetch_coverage) start no earlier than the
-- bars it keeps: the cutoff, or where a pending valuation's protection starts (retention_pending).
-- A range wholly before that goes; one that crosses it starts there.
WITH keep AS (
    SELECT c.ctid AS row_id, least(%(cutoff)s, coalesce(p.keep_from, %(cutoff)s)) AS keep_from
    FROM price_fetch_coverage c LEFT JOIN retention_pending p ON p.ticker = c.ticker
    WHERE c.table_name = %(table)s
), gone AS (
    DELETE FROM price_fetch_coverage c USING keep k WHERE c.ctid = k.row_id AND c.start_date < k.keep_from
    RETURNING c.table_name, c.ticker, k.keep_from, c.end_date, c.fetched_at
)
INSERT INTO price_fetch_coverage (table_name, ticker, start_date, end_date, fetched_at)
SELECT table_name, ticker, keep_from, end_date, fetched_at FROM gone WHERE end_date >= keep_from
ON CONFLICT (table_name, ticker, start_date, end_date) DO NOTHING
