-- Every swing line as loaded: its version of the bar. swing_bars_10m keeps the winning version
-- (the latest file, then line); when a file is rewritten or removed from the tables, the bars it
-- won are taken again from the versions other files still provide, so a bar another file carries
-- is never lost (before, forgetting a file deleted such bars).
CREATE TABLE IF NOT EXISTS swing_bar_versions (LIKE swing_bars_10m INCLUDING DEFAULTS);
ALTER TABLE swing_bar_versions ADD PRIMARY KEY (source_file, source_line);
CREATE INDEX IF NOT EXISTS swing_bar_versions_bar ON swing_bar_versions (symbol, bar_time);
-- What is stored so far: the winners (the versions they beat are not known; reloading a file adds its own).
INSERT INTO swing_bar_versions SELECT * FROM swing_bars_10m ON CONFLICT DO NOTHING;
