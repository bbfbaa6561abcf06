WITH parsed AS (
    SELECT source_line, line, CASE WHEN pg_input_is_valid(line, 'jsonb') THEN line::jsonb END AS j FROM stage_lines
), checked AS (
    SELECT source_line, line, j, CASE
        WHEN j IS NULL THEN 'invalid JSON'
        WHEN jsonb_typeof(j) <> 'object' THEN 'not a JSON object'
        WHEN NOT jsonl_is_text(j->'symbol', 20) THEN 'symbol: missing or not a string of 1-20 characters'
        WHEN NOT jsonl_is_time(j->'ts') THEN 'ts: missing or not an ISO-8601 time with offset'
        WHEN jsonb_typeof(j->'price') IS DISTINCT FROM 'object' THEN 'price: missing or not an object'
        WHEN NOT jsonl_is_price(j->'price'->'open') THEN 'price.open: missing, not a number, negative or too large'
        WHEN NOT jsonl_is_price(j->'price'->'high') THEN 'price.high: missing, not a number, negative or too large'
        WHEN NOT jsonl_is_price(j->'price'->'low') THEN 'price.low: missing, not a number, negative or too large'
        WHEN NOT jsonl_is_price(j->'price'->'close') THEN 'price.close: missing, not a number, negative or too large'
        WHEN (j->'price'->>'high')::numeric < (j->'price'->>'low')::numeric THEN 'price: high < low'
        WHEN (j->'price'->>'open')::numeric NOT BETWEEN (j->'price'->>'low')::numeric AND (j->'price'->>'high')::numeric
            THEN 'price: open outside low..high'
        WHEN (j->'price'->>'close')::numeric NOT BETWEEN (j->'price'->>'low')::numeric AND (j->'price'->>'high')::numeric
            THEN 'price: close outside low..high'
        WHEN NOT jsonl_is_count(j->'volume') THEN 'volume: missing or not a non-negative integer'
        WHEN j ? 'bid_price' AND j->'bid_price' <> 'null' AND NOT jsonl_is_price(j->'bid_price') THEN 'bid_price: not a number, negative or too large'
        WHEN j ? 'ask_price' AND j->'ask_price' <> 'null' AND NOT jsonl_is_price(j->'ask_price') THEN 'ask_price: not a number, negative or too large'
        WHEN NOT jsonl_is_text(j->'session', 50) THEN 'session: missing or not a string of 1-50 characters'
        WHEN j ? 'dataset' AND NOT jsonl_is_text(j->'dataset', 50) THEN 'dataset: not a string of 1-50 characters'
        WHEN j ? 'market' AND NOT jsonl_is_text(j->'market', 50) THEN 'market: not a string of 1-50 characters'
        WHEN j ? 'source' AND NOT jsonl_is_text(j->'source', 50) THEN 'source: not a string of 1-50 characters'
    END AS reason
    FROM parsed
), good AS (
    INSERT INTO swing_bars_10m (symbol, bar_time, open, high, low, close, volume, bid_price, ask_price, session_id, dataset,
                                market, source, source_file, source_line)
    SELECT DISTINCT ON (j->>'symbol', (j->>'ts')::timestamptz)
           j->>'symbol', (j->>'ts')::timestamptz, (j->'price'->>'open')::numeric, (j->'price'->>'high')::numeric,
           (j->'price'->>'low')::numeric, (j->'price'->>'close')::numeric, (j->>'volume')::numeric::bigint,
           (j->>'bid_price')::numeric, (j->>'ask_price')::numeric, j->>'session', j->>'dataset', j->>'market', j->>'source',
           %(file)s, source_line
    FROM checked WHERE reason IS NULL
    ORDER BY j->>'symbol', (j->>'ts')::timestamptz, source_line DESC
    ON CONFLICT (symbol, bar_time) DO UPDATE SET
        open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close, volume = EXCLUDED.volume,
        bid_price = EXCLUDED.bid_price, ask_price = EXCLUDED.ask_price, session_id = EXCLUDED.session_id,
        dataset = EXCLUDED.dataset, market = EXCLUDED.market, source = EXCLUDED.source,
        source_file = EXCLUDED.source_file, source_line = EXCLUDED.source_line
    RETURNING 1
), bad AS (
    INSERT INTO jsonl_rejects (source_file, source_line, reason, raw)
    SELECT %(file)s, source_line, reason, left(line, 2000) FROM checked WHERE reason IS NOT NULL
    ON CONFLICT (source_file, source_line) DO UPDATE SET reason = EXCLUDED.reason, raw = EXCLUDED.raw, rejected_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM good), (SELECT count(*) FROM bad)
