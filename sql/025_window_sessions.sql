-- "window" is a reserved word in SQL: `select window, rank from analytics_trending_sectors` fails.
-- window_sessions is the same value under a name that needs no quotes (generated: it cannot drift).
ALTER TABLE analytics_trending_sectors ADD COLUMN IF NOT EXISTS window_sessions integer GENERATED ALWAYS AS ("window") STORED;
ALTER TABLE analytics_trending_stocks ADD COLUMN IF NOT EXISTS window_sessions integer GENERATED ALWAYS AS ("window") STORED;
COMMENT ON COLUMN analytics_trending_sectors.window_sessions IS 'The ranking''s window in NYSE sessions (5, 10 or 20): the same as "window", whose name is a reserved word and must be quoted.';
COMMENT ON COLUMN analytics_trending_stocks.window_sessions IS 'The ranking''s window in NYSE sessions (5, 10 or 20): the same as "window", whose name is a reserved word and must be quoted.';
COMMENT ON COLUMN analytics_trending_sectors."window" IS 'As window_sessions (quote it: window is a reserved word).';
COMMENT ON COLUMN analytics_trending_stocks."window" IS 'As window_sessions (quote it: window is a reserved word).';
