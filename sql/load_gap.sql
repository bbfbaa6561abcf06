INSERT INTO observer_gaps (logged_at, gap_start_at, gap_end_at, gap_seconds, scope, reason, session_id, source_file, source_line)
SELECT logged_at, gap_start_ts, gap_end_ts, gap_seconds, scope, reason, session_id, %(file)s, source_line
FROM stage_gap
ON CONFLICT (source_file, source_line) DO NOTHING
