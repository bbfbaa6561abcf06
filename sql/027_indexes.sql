-- "Which funds hold AAPL (and since when)": holdings by the held symbol, not only by fund.
CREATE INDEX IF NOT EXISTS collected_meta_etf_holding ON collected_meta_etf (holding, as_of_date);
-- idx_swing_10m_session_time (session_id, bar_time) answers everything this one did: its lead column.
DROP INDEX IF EXISTS idx_swing_10m_session;
