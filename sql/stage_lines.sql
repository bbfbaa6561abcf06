CREATE TEMP TABLE stage_lines (source_line integer, line text) ON COMMIT DROP
