-- The three indexes the JSONL source document recommends for its range queries (one symbol's or
-- one session's data over an hour or a day, the newest first); retention deletes by time on them too.
CREATE INDEX IF NOT EXISTS idx_scalp_ticks_time ON scalp_ticks (event_time DESC);
CREATE INDEX IF NOT EXISTS idx_scalp_ticks_session_time ON scalp_ticks (session_id, event_time);
CREATE INDEX IF NOT EXISTS idx_swing_10m_session_time ON swing_bars_10m (session_id, bar_time);
