-- One naming convention for what users query: the instrument is `ticker` (`<role>_ticker` where a row
-- names two), an instant ends in `_at`, a date in `_date`, and a table is named by its domain and
-- grain (etf_daily_bars, not collected_daily_etf_ohlc). Renames are changes of the catalog only: no
-- row is rewritten, whatever a table holds; comments, grants, indexes and the views built on a table
-- follow it (they hold the table, not its name).
--
-- The old names keep working for one release: each is a view of its new table under the old table
-- and column names, made before the columns are renamed (a view keeps the names it was made with).
-- Such a view is automatically updatable: reads, inserts (defaults included), upserts (ON CONFLICT on
-- the old column names) and updates through it reach the table. docs/gen_schema.py reads the
-- statements below to show the new names and list the old ones.

-- First, while they are tables still (a view's column cannot change type): the share counts left as
-- doubles are whole numbers, as shares_outstanding.shares became in 028. Small tables: the rewrite is short.
ALTER TABLE collected_meta_etf ALTER COLUMN shares_held TYPE bigint USING round(shares_held)::bigint;
ALTER TABLE analytics_portfolio_allocation ALTER COLUMN shares_outstanding TYPE bigint USING round(shares_outstanding)::bigint;

ALTER TABLE collected_daily_etf_ohlc RENAME TO etf_daily_bars;
CREATE VIEW collected_daily_etf_ohlc AS SELECT * FROM etf_daily_bars;

ALTER TABLE collected_daily_stock_history RENAME TO stock_daily_bars;
CREATE VIEW collected_daily_stock_history AS SELECT * FROM stock_daily_bars;

ALTER TABLE collected_daily_benchmark_ohlc RENAME TO benchmark_daily_bars;
CREATE VIEW collected_daily_benchmark_ohlc AS SELECT * FROM benchmark_daily_bars;

ALTER TABLE collected_intraday_bars RENAME TO intraday_bars;
CREATE VIEW collected_intraday_bars AS SELECT * FROM intraday_bars;
ALTER TABLE intraday_bars RENAME COLUMN bar_start TO bar_start_at;
ALTER TABLE intraday_bars RENAME COLUMN session TO session_date;

ALTER TABLE collected_meta_etf RENAME TO etf_holdings;
CREATE VIEW collected_meta_etf AS SELECT * FROM etf_holdings;
ALTER TABLE etf_holdings RENAME COLUMN etf TO etf_ticker;
ALTER TABLE etf_holdings RENAME COLUMN holding TO ticker;
ALTER TABLE etf_holdings RENAME COLUMN sponsor_symbol TO sponsor_ticker;

ALTER TABLE collected_shares_outstanding RENAME TO shares_outstanding;
CREATE VIEW collected_shares_outstanding AS SELECT * FROM shares_outstanding;
ALTER TABLE shares_outstanding RENAME COLUMN observed_on TO observed_date;

ALTER TABLE txn_events RENAME TO events;
CREATE VIEW txn_events AS SELECT * FROM events;
ALTER TABLE events RENAME COLUMN event_time TO event_at;

ALTER TABLE corporate_actions RENAME TO dividends_and_splits;
CREATE VIEW corporate_actions AS SELECT * FROM dividends_and_splits;
ALTER TABLE dividends_and_splits RENAME COLUMN first_seen TO first_seen_at;

ALTER TABLE analytics_portfolio_allocation RENAME TO portfolio_allocation;
CREATE VIEW analytics_portfolio_allocation AS SELECT * FROM portfolio_allocation;
ALTER TABLE portfolio_allocation RENAME COLUMN sector_etf TO sector_ticker;
ALTER TABLE portfolio_allocation RENAME COLUMN shares_as_of TO shares_as_of_date;

-- The rankings: "window" (a reserved word) goes; window_sessions, its copy, becomes the stored column.
ALTER TABLE analytics_trending_sectors RENAME TO trending_sectors;
ALTER TABLE analytics_trending_stocks RENAME TO trending_stocks;
ALTER TABLE trending_stocks RENAME COLUMN sector_etf TO sector_ticker;
DO $$
DECLARE
    ranking text;
BEGIN
    FOREACH ranking IN ARRAY ARRAY['trending_sectors', 'trending_stocks'] LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN window_sessions DROP EXPRESSION, ALTER COLUMN window_sessions SET NOT NULL', ranking);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I, ADD CONSTRAINT %I PRIMARY KEY (as_of_date, ticker, window_sessions)',
                       ranking, 'analytics_' || ranking || '_pkey', ranking || '_pkey');
    END LOOP;
END $$;
ALTER TABLE trending_sectors DROP COLUMN "window";
ALTER TABLE trending_stocks DROP COLUMN "window";
CREATE VIEW analytics_trending_sectors AS
    SELECT as_of_date, ticker, window_sessions AS "window", relative_return, rank, computed_at, start_date, start_adj_close,
           end_adj_close, own_return, benchmark_return, window_sessions, run_id
    FROM trending_sectors;
CREATE VIEW analytics_trending_stocks AS
    SELECT as_of_date, ticker, sector_ticker AS sector_etf, window_sessions AS "window", start_date, start_adj_close, end_adj_close,
           own_return, benchmark_return, relative_return, rank, computed_at, window_sessions, run_id
    FROM trending_stocks;

ALTER VIEW collected_weekly_stock_bars RENAME TO stock_weekly_bars;
CREATE VIEW collected_weekly_stock_bars AS SELECT * FROM stock_weekly_bars;
ALTER VIEW collected_monthly_stock_bars RENAME TO stock_monthly_bars;
CREATE VIEW collected_monthly_stock_bars AS SELECT * FROM stock_monthly_bars;
ALTER VIEW collected_weekly_etf_bars RENAME TO etf_weekly_bars;
CREATE VIEW collected_weekly_etf_bars AS SELECT * FROM etf_weekly_bars;
ALTER VIEW collected_monthly_etf_bars RENAME TO etf_monthly_bars;
CREATE VIEW collected_monthly_etf_bars AS SELECT * FROM etf_monthly_bars;
ALTER VIEW stock_weekly_bars RENAME COLUMN week_start TO week_start_date;
ALTER VIEW etf_weekly_bars RENAME COLUMN week_start TO week_start_date;
ALTER VIEW stock_monthly_bars RENAME COLUMN month_start TO month_start_date;
ALTER VIEW etf_monthly_bars RENAME COLUMN month_start TO month_start_date;
ALTER VIEW stock_weekly_bars RENAME COLUMN first_session TO first_session_date;
ALTER VIEW etf_weekly_bars RENAME COLUMN first_session TO first_session_date;
ALTER VIEW stock_monthly_bars RENAME COLUMN first_session TO first_session_date;
ALTER VIEW etf_monthly_bars RENAME COLUMN first_session TO first_session_date;
ALTER VIEW stock_weekly_bars RENAME COLUMN last_session TO last_session_date;
ALTER VIEW etf_weekly_bars RENAME COLUMN last_session TO last_session_date;
ALTER VIEW stock_monthly_bars RENAME COLUMN last_session TO last_session_date;
ALTER VIEW etf_monthly_bars RENAME COLUMN last_session TO last_session_date;

-- latest_intraday_bars keeps its name, so its old column names stay beside the new ones for a release.
CREATE OR REPLACE VIEW latest_intraday_bars AS
    SELECT DISTINCT ON (ticker, interval) ticker, interval, bar_start_at AS bar_start, session_date AS session, regular, open, high, low,
           close, volume, source, fetched_at, repaired, run_id, bar_start_at, session_date
    FROM intraday_bars ORDER BY ticker, interval, bar_start_at DESC;
COMMENT ON COLUMN latest_intraday_bars.bar_start_at IS 'The start of the bar, UTC (09:30 New York is the first regular bar of a session).';
COMMENT ON COLUMN latest_intraday_bars.session_date IS 'The NYSE session (New York trading day) the bar belongs to.';
COMMENT ON COLUMN latest_intraday_bars.bar_start IS 'Deprecated (dropped in the next release): as bar_start_at.';
COMMENT ON COLUMN latest_intraday_bars.session IS 'Deprecated (dropped in the next release): as session_date.';
COMMENT ON COLUMN latest_intraday_bars.run_id IS 'The run that last wrote the row: backfill_internal.backfill_runs.run_id (its command, flow and times); NULL for rows written before runs were recorded.';
COMMENT ON VIEW latest_intraday_bars IS 'The latest stored intraday bar of each ticker and interval (intraday_bars'' columns).';

-- The indexes, constraints, sequences and partitions named after a table take its new name (the
-- intraday months: intraday_bars_p202506); a NOT NULL constraint also names its column's new name.
DO $$
DECLARE
    pair text[];
    target record;
BEGIN
    FOREACH pair SLICE 1 IN ARRAY ARRAY[
        ['collected_daily_etf_ohlc', 'etf_daily_bars'], ['collected_daily_stock_history', 'stock_daily_bars'],
        ['collected_daily_benchmark_ohlc', 'benchmark_daily_bars'], ['collected_intraday_bars', 'intraday_bars'],
        ['collected_meta_etf', 'etf_holdings'], ['collected_shares_outstanding', 'shares_outstanding'], ['txn_events', 'events'],
        ['corporate_actions', 'dividends_and_splits'], ['analytics_portfolio_allocation', 'portfolio_allocation'],
        ['analytics_trending_sectors', 'trending_sectors'], ['analytics_trending_stocks', 'trending_stocks']]
    LOOP
        FOR target IN  -- partitions of the table (in the machinery's schema), its sequences and its indexes
            SELECT c.oid, n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'S', 'i', 'I') AND starts_with(c.relname, pair[1] || '_')
              AND (c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(pair[2]))
                   OR c.oid IN (SELECT objid FROM pg_depend WHERE refobjid = to_regclass(pair[2]) AND classid = 'pg_class'::regclass)
                   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = to_regclass(pair[2])
                                OR indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = to_regclass(pair[2]))))
        LOOP
            EXECUTE format('ALTER %s %I.%I RENAME TO %I', CASE target.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'r' THEN 'TABLE' ELSE 'INDEX' END,
                           target.nspname, target.relname, pair[2] || substr(target.relname, length(pair[1]) + 1));
        END LOOP;
        FOR target IN
            SELECT c.conname, c.contype, a.attname FROM pg_constraint c
            LEFT JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.conrelid = to_regclass(pair[2]) AND c.contype IN ('c', 'n') AND starts_with(c.conname, pair[1] || '_')
        LOOP  -- the partitions' copies follow (a rename recurses)
            EXECUTE format('ALTER TABLE %I RENAME CONSTRAINT %I TO %I', pair[2], target.conname,
                           CASE target.contype WHEN 'n' THEN pair[2] || '_' || target.attname || '_not_null'
                                ELSE pair[2] || substr(target.conname, length(pair[1]) + 1) END);
        END LOOP;
    END LOOP;
END $$;

ALTER INDEX etf_holdings_holding RENAME TO etf_holdings_ticker;
ALTER INDEX events_ticker_event_time_source_key RENAME TO events_ticker_event_at_source_key;

-- The machinery names the daily tables it keeps ranges and changes for.
UPDATE price_fetch_coverage SET table_name = CASE table_name WHEN 'collected_daily_etf_ohlc' THEN 'etf_daily_bars'
    WHEN 'collected_daily_stock_history' THEN 'stock_daily_bars' ELSE 'benchmark_daily_bars' END
WHERE table_name IN ('collected_daily_etf_ohlc', 'collected_daily_stock_history', 'collected_daily_benchmark_ohlc');
UPDATE price_changes SET table_name = CASE table_name WHEN 'collected_daily_etf_ohlc' THEN 'etf_daily_bars'
    WHEN 'collected_daily_stock_history' THEN 'stock_daily_bars' ELSE 'benchmark_daily_bars' END
WHERE table_name IN ('collected_daily_etf_ohlc', 'collected_daily_stock_history', 'collected_daily_benchmark_ohlc');

-- What the old names are, in the catalog.
COMMENT ON VIEW collected_daily_etf_ohlc IS 'Deprecated (dropped in the next release): the old name of etf_daily_bars.';
COMMENT ON VIEW collected_daily_stock_history IS 'Deprecated (dropped in the next release): the old name of stock_daily_bars.';
COMMENT ON VIEW collected_daily_benchmark_ohlc IS 'Deprecated (dropped in the next release): the old name of benchmark_daily_bars.';
COMMENT ON VIEW collected_intraday_bars IS 'Deprecated (dropped in the next release): the old name of intraday_bars (bar_start: bar_start_at, session: session_date).';
COMMENT ON VIEW collected_meta_etf IS 'Deprecated (dropped in the next release): the old name of etf_holdings (etf: etf_ticker, holding: ticker, sponsor_symbol: sponsor_ticker).';
COMMENT ON VIEW collected_shares_outstanding IS 'Deprecated (dropped in the next release): the old name of shares_outstanding (observed_on: observed_date).';
COMMENT ON VIEW txn_events IS 'Deprecated (dropped in the next release): the old name of events (event_time: event_at).';
COMMENT ON VIEW corporate_actions IS 'Deprecated (dropped in the next release): the old name of dividends_and_splits (first_seen: first_seen_at).';
COMMENT ON VIEW analytics_portfolio_allocation IS 'Deprecated (dropped in the next release): the old name of portfolio_allocation (sector_etf: sector_ticker, shares_as_of: shares_as_of_date).';
COMMENT ON VIEW analytics_trending_sectors IS 'Deprecated (dropped in the next release): the old name of trending_sectors ("window": window_sessions).';
COMMENT ON VIEW analytics_trending_stocks IS 'Deprecated (dropped in the next release): the old name of trending_stocks ("window": window_sessions, sector_etf: sector_ticker).';
COMMENT ON VIEW collected_weekly_stock_bars IS 'Deprecated (dropped in the next release): the old name of stock_weekly_bars (week_start, first_session, last_session: with _date).';
COMMENT ON VIEW collected_monthly_stock_bars IS 'Deprecated (dropped in the next release): the old name of stock_monthly_bars (month_start, first_session, last_session: with _date).';
COMMENT ON VIEW collected_weekly_etf_bars IS 'Deprecated (dropped in the next release): the old name of etf_weekly_bars (week_start, first_session, last_session: with _date).';
COMMENT ON VIEW collected_monthly_etf_bars IS 'Deprecated (dropped in the next release): the old name of etf_monthly_bars (month_start, first_session, last_session: with _date).';

-- The comments that named an old name, in the new ones.
COMMENT ON TABLE benchmark_daily_bars IS 'Daily bars of the benchmarks the pipeline compares with (SPY), one row per ticker and NYSE session; the shape of etf_daily_bars.';
COMMENT ON VIEW daily_bars IS 'Every daily bar of the three daily tables, with the table it comes from as universe: etf (etf_daily_bars), benchmark (benchmark_daily_bars), stock (stock_daily_bars). A ticker may be in more than one (SPY: etf and benchmark).';
COMMENT ON VIEW etf_monthly_bars IS 'Monthly bars derived from etf_daily_bars, as stock_monthly_bars.';
COMMENT ON VIEW etf_weekly_bars IS 'Weekly bars derived from etf_daily_bars, as stock_weekly_bars.';
COMMENT ON COLUMN latest_intraday_bars.open IS 'As intraday_bars.open.';
COMMENT ON COLUMN latest_intraday_bars.high IS 'As intraday_bars.high.';
COMMENT ON COLUMN latest_intraday_bars.low IS 'As intraday_bars.low.';
COMMENT ON COLUMN latest_intraday_bars.close IS 'As intraday_bars.close.';
COMMENT ON COLUMN latest_intraday_bars.volume IS 'As intraday_bars.volume.';
COMMENT ON VIEW stock_monthly_bars IS 'Monthly bars derived from stock_daily_bars, as stock_weekly_bars for calendar months.';
COMMENT ON VIEW stock_weekly_bars IS 'Weekly bars (ISO weeks from Monday) derived from stock_daily_bars: first open, highest high, lowest low, last close and adj_close, volume summed, sessions counted.';
COMMENT ON TABLE intraday_bars IS 'Intraday bars (backfill --interval 1h .. 1m), one row per ticker, interval and bar start (UTC), as Yahoo served them: prices adjusted for splits up to the fetch, and restated for later ones. Partitioned by month of bar_start_at.';
COMMENT ON TABLE dividends_and_splits IS 'Splits (split_ratio: 4 for 4-for-1) and dividends (dividend_amount: cash per share) seen in fetched data, by ex-date.';
COMMENT ON COLUMN dividends_and_splits.value IS 'As split_ratio for a split, dividend_amount for a dividend (the stored value they are made from).';
COMMENT ON COLUMN events.base_date IS 'The session of the base bar: the last bar whose close (16:00 New York, or the early close) is at or before event_at.';
COMMENT ON COLUMN shares_outstanding.shares IS 'Shares outstanding as Yahoo reported them on observed_date (a whole number).';
COMMENT ON COLUMN portfolio_allocation.shares_outstanding IS 'The latest share count reported on or before as_of_date (shares_outstanding): point in time, no look-ahead (a whole number).';
COMMENT ON COLUMN etf_holdings.shares_held IS 'Shares of the holding the fund holds, a whole number (the sponsor''s file only).';
COMMENT ON COLUMN trending_sectors.window_sessions IS 'The ranking''s window in NYSE sessions (5, 10 or 20).';
COMMENT ON COLUMN trending_stocks.window_sessions IS 'The ranking''s window in NYSE sessions (5, 10 or 20).';
COMMENT ON COLUMN etf_holdings.sponsor_ticker IS 'The holding''s ticker as the sponsor''s file writes it (BRK.B), before mapping to Yahoo''s.';
COMMENT ON COLUMN etf_holdings.ticker IS 'The held stock, as a Yahoo symbol (BRK-B); cash and futures lines are left out.';

-- The old names, readable by the read-only role as the tables were.
DO $$
DECLARE
    relation text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'market_backfill_reader') THEN
        RETURN;
    END IF;
    FOREACH relation IN ARRAY ARRAY[
        'collected_daily_etf_ohlc', 'collected_daily_stock_history', 'collected_daily_benchmark_ohlc', 'collected_intraday_bars',
        'collected_meta_etf', 'collected_shares_outstanding', 'txn_events', 'corporate_actions', 'analytics_portfolio_allocation',
        'analytics_trending_sectors', 'analytics_trending_stocks', 'collected_weekly_stock_bars', 'collected_monthly_stock_bars',
        'collected_weekly_etf_bars', 'collected_monthly_etf_bars']
    LOOP
        EXECUTE format('GRANT SELECT ON %I TO market_backfill_reader', relation);
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'market_backfill_reader not granted the old names: % may not grant here', current_user;
END $$;
