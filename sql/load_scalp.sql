WITH parsed AS (
    SELECT source_line, line, CASE WHEN pg_input_is_valid(line, 'jsonb') THEN line::jsonb END AS j FROM stage_lines
), checked AS (
    SELECT source_line, line, j, CASE
        WHEN j IS NULL THEN 'invalid JSON'
        WHEN jsonb_typeof(j) <> 'object' THEN 'not a JSON object'
        WHEN NOT jsonl_is_text(j->'symbol', 20) THEN 'symbol: missing or not a string of 1-20 characters'
        WHEN NOT jsonl_is_time(j->'event_time') THEN 'event_time: missing or not an ISO-8601 time with offset'
        WHEN j ? 'ts' AND j->'ts' <> 'null' AND NOT jsonl_is_time(j->'ts') THEN 'ts: not an ISO-8601 time with offset'
        WHEN NOT jsonl_is_price(j->'bid_price') THEN 'bid_price: missing, not a number, negative or too large'
        WHEN NOT jsonl_is_price(j->'ask_price') THEN 'ask_price: missing, not a number, negative or too large'
        WHEN NOT jsonl_is_price(j->'last_price') THEN 'last_price: missing, not a number, negative or too large'
        WHEN NOT jsonl_is_count(j->'bid_size') THEN 'bid_size: missing or not a non-negative integer'
        WHEN NOT jsonl_is_count(j->'ask_size') THEN 'ask_size: missing or not a non-negative integer'
        WHEN NOT jsonl_is_count(j->'volume') THEN 'volume: missing or not a non-negative integer'
        WHEN NOT jsonl_is_text(j->'session_id', 50) THEN 'session_id: missing or not a string of 1-50 characters'
        WHEN j ? 'mitigation_level' AND NOT (jsonb_typeof(j->'mitigation_level') = 'number'
             AND trunc((j->>'mitigation_level')::numeric) = (j->>'mitigation_level')::numeric AND abs((j->>'mitigation_level')::numeric) < 1000000) THEN 'mitigation_level: not an integer'
        WHEN j ? 'quality_flag' AND NOT jsonl_is_text(j->'quality_flag', 20) THEN 'quality_flag: not a string of 1-20 characters'
    END AS reason
    FROM parsed
), good AS (
    INSERT INTO scalp_ticks (symbol, event_time, ts, bid_price, ask_price, bid_size, ask_size, last_price, volume,
                             session_id, mitigation_level, quality_flag, source_file, source_line)
    SELECT j->>'symbol', (j->>'event_time')::timestamptz, (j->>'ts')::timestamptz, (j->>'bid_price')::numeric,
           (j->>'ask_price')::numeric, (j->>'bid_size')::bigint, (j->>'ask_size')::numeric::bigint, (j->>'last_price')::numeric,
           (j->>'volume')::numeric::bigint, j->>'session_id', coalesce((j->>'mitigation_level')::numeric::int, 0),
           coalesce(j->>'quality_flag', 'normal'), %(file)s, source_line
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
