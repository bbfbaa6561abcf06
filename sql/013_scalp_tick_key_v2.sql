-- A tick's identity from its values as stored, so the database can compute it too: the event time
-- in milliseconds (48 bits, keys arrive about in index order), then 80 bits of SHA-256 over
-- symbol, event time and ts in microseconds, prices times 10,000, sizes, volume, session,
-- mitigation level and quality flag, NUL-separated (tasks/jsonl/ticks.py computes the same while
-- loading). The keys of migration 011 hashed the values as the file spelled them (70000 and
-- 70000.0 were two ticks) and ticks loaded before it had none: every stored tick is keyed again,
-- and a tick stored more than once becomes a copy of its first row (its minutes' bars recomputed).
CREATE OR REPLACE FUNCTION scalp_tick_key(symbol text, event_time timestamptz, ts timestamptz, bid_price numeric,
                                          ask_price numeric, bid_size bigint, ask_size bigint, last_price numeric,
                                          volume bigint, session_id text, mitigation_level integer, quality_flag text)
RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT encode(substr(int8send(((floor(extract(epoch FROM event_time) * 1000)::bigint % 281474976710656) + 281474976710656)
                              % 281474976710656), 3, 6)
              || substr(sha256(convert_to(symbol, 'UTF8') || '\x00'::bytea
                               || convert_to((extract(epoch FROM event_time) * 1000000)::bigint::text, 'UTF8') || '\x00'::bytea
                               || convert_to(coalesce((extract(epoch FROM ts) * 1000000)::bigint::text, ''), 'UTF8') || '\x00'::bytea
                               || convert_to((bid_price * 10000)::bigint::text, 'UTF8') || '\x00'::bytea
                               || convert_to((ask_price * 10000)::bigint::text, 'UTF8') || '\x00'::bytea
                               || convert_to(bid_size::text, 'UTF8') || '\x00'::bytea
                               || convert_to(ask_size::text, 'UTF8') || '\x00'::bytea
                               || convert_to((last_price * 10000)::bigint::text, 'UTF8') || '\x00'::bytea
                               || convert_to(volume::text, 'UTF8') || '\x00'::bytea
                               || convert_to(session_id, 'UTF8') || '\x00'::bytea
                               || convert_to(mitigation_level::text, 'UTF8') || '\x00'::bytea
                               || convert_to(quality_flag, 'UTF8')), 1, 10), 'hex')::uuid
$$;

DROP INDEX IF EXISTS scalp_ticks_tick_key;
-- Copies name the stored tick by its old key: follow it to the new one first.
UPDATE scalp_tick_copies c
SET tick_key = scalp_tick_key(t.symbol, t.event_time, t.ts, t.bid_price, t.ask_price, t.bid_size, t.ask_size, t.last_price,
                              t.volume, t.session_id, t.mitigation_level, t.quality_flag)
FROM scalp_ticks t WHERE t.tick_key = c.tick_key;
UPDATE scalp_ticks
SET tick_key = scalp_tick_key(symbol, event_time, ts, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id,
                              mitigation_level, quality_flag);

CREATE TEMP TABLE repeated_ticks ON COMMIT DROP AS
SELECT id, symbol, event_time, source_file, source_line, tick_key
FROM (SELECT id, symbol, event_time, source_file, source_line, tick_key,
             row_number() OVER (PARTITION BY tick_key ORDER BY id) AS n
      FROM scalp_ticks) numbered
WHERE n > 1;
INSERT INTO scalp_tick_copies (source_file, source_line, tick_key)
SELECT source_file, source_line, tick_key FROM repeated_ticks
ON CONFLICT (source_file, source_line) DO UPDATE SET tick_key = EXCLUDED.tick_key;
DELETE FROM scalp_ticks t USING repeated_ticks r WHERE t.id = r.id;

-- Their minutes' bars, recomputed from the ticks (written out, not read from sql/refresh_1m_bars.sql:
-- a migration must do the same whenever a database reaches it, whatever that file becomes).
CREATE TEMP TABLE repeated_minutes ON COMMIT DROP AS
SELECT DISTINCT symbol, date_trunc('minute', event_time) AS bar_time FROM repeated_ticks;
DELETE FROM scalp_1m_bars b USING repeated_minutes m WHERE b.symbol = m.symbol AND b.bar_time = m.bar_time;
INSERT INTO scalp_1m_bars (symbol, bar_time, open, high, low, close, volume, tick_count, coverage_ratio, session_id,
                           mitigation_level, quality_flag, open_time, open_file, open_line, close_time, close_file, close_line)
SELECT t.symbol, m.bar_time,
       (array_agg(t.last_price ORDER BY t.event_time, t.source_file, t.source_line))[1],
       max(t.last_price), min(t.last_price),
       (array_agg(t.last_price ORDER BY t.event_time DESC, t.source_file DESC, t.source_line DESC))[1],
       sum(t.volume), count(*), count(*) / 120.0,
       (array_agg(t.session_id ORDER BY t.event_time DESC, t.source_file DESC, t.source_line DESC))[1],
       max(t.mitigation_level),
       coalesce(max(t.quality_flag) FILTER (WHERE t.quality_flag <> 'normal'), 'normal'),
       min(t.event_time),
       (array_agg(t.source_file ORDER BY t.event_time, t.source_file, t.source_line))[1],
       (array_agg(t.source_line ORDER BY t.event_time, t.source_file, t.source_line))[1],
       max(t.event_time),
       (array_agg(t.source_file ORDER BY t.event_time DESC, t.source_file DESC, t.source_line DESC))[1],
       (array_agg(t.source_line ORDER BY t.event_time DESC, t.source_file DESC, t.source_line DESC))[1]
FROM repeated_minutes m
JOIN scalp_ticks t ON t.symbol = m.symbol AND t.event_time >= m.bar_time AND t.event_time < m.bar_time + interval '1 minute'
GROUP BY t.symbol, m.bar_time;

CREATE UNIQUE INDEX scalp_ticks_tick_key ON scalp_ticks (tick_key);
