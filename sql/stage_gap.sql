CREATE TEMP TABLE stage_gap (
    logged_at timestamptz, gap_start_ts timestamptz, gap_end_ts timestamptz, gap_seconds double precision, scope text,
    reason text, session_id text, source_line int
) ON COMMIT DROP
