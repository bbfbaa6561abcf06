-- idx_scalp_ticks_session_time (session_id, event_time) serves every lookup by session that
-- idx_scalp_ticks_session (session_id) did; one index less to maintain on every tick loaded.
DROP INDEX IF EXISTS idx_scalp_ticks_session;
