WITH parsed AS (
    SELECT source_line, line, CASE WHEN pg_input_is_valid(line, 'jsonb') THEN line::jsonb END AS j FROM stage_lines
), checked AS (
    SELECT source_line, line, j, CASE
        WHEN j IS NULL THEN 'invalid JSON'
        WHEN jsonb_typeof(j) <> 'object' THEN 'not a JSON object'
        WHEN j ? 'timestamp' AND NOT jsonl_is_time(j->'timestamp') THEN 'timestamp: not an ISO-8601 time with offset'
        WHEN NOT jsonl_is_time(j->'gap_start_ts') THEN 'gap_start_ts: missing or not an ISO-8601 time with offset'
        WHEN NOT jsonl_is_time(j->'gap_end_ts') THEN 'gap_end_ts: missing or not an ISO-8601 time with offset'
        WHEN (j->>'gap_end_ts')::timestamptz < (j->>'gap_start_ts')::timestamptz THEN 'gap ends before it starts'
        WHEN NOT jsonl_is_price(j->'gap_seconds') THEN 'gap_seconds: missing, not a number or negative'
        WHEN NOT jsonl_is_text(j->'session_id', 50) THEN 'session_id: missing or not a string of 1-50 characters'
        WHEN j ? 'scope' AND NOT jsonl_is_text(j->'scope', 20) THEN 'scope: not a string of 1-20 characters'
        WHEN j ? 'reason' AND NOT jsonl_is_text(j->'reason', 100) THEN 'reason: not a string of 1-100 characters'
    END AS reason
    FROM parsed
), good AS (
    INSERT INTO scalp_gaps (logged_at, gap_start_ts, gap_end_ts, gap_seconds, scope, reason, session_id, source_file, source_line)
    SELECT (j->>'timestamp')::timestamptz, (j->>'gap_start_ts')::timestamptz, (j->>'gap_end_ts')::timestamptz,
           (j->>'gap_seconds')::double precision, j->>'scope', j->>'reason', j->>'session_id', %(file)s, source_line
    FROM checked WHERE reason IS NULL
    ON CONFLICT (source_file, source_line) DO NOTHING
    RETURNING 1
), bad AS (
    INSERT INTO jsonl_rejects (source_file, source_line, reason, raw)
    SELECT %(file)s, source_line, reason, left(line, 2000) FROM checked WHERE reason IS NOT NULL
    ON CONFLICT (source_file, source_line) DO UPDATE SET reason = EXCLUDED.reason, raw = EXCLUDED.raw, rejected_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM good), (SELECT count(*) FROM bad)
