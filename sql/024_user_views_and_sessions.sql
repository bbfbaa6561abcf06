-- What users would otherwise write themselves against the tables: the exchange's sessions, all daily
-- bars in one relation, adjusted OHLC, the latest bar per ticker, coverage per ticker; and a role
-- that may read the data and nothing of the machinery. Comments say what each column means.

-- The NYSE sessions (exchange_calendars' XNYS), filled and extended by the commands themselves
-- (tasks/core/sessions_table.py): gap queries need no calendar in the client.
CREATE TABLE IF NOT EXISTS nyse_sessions (
    session_date date        PRIMARY KEY,
    open_at      timestamptz NOT NULL,
    close_at     timestamptz NOT NULL CHECK (close_at > open_at),
    early_close  boolean     NOT NULL
);
COMMENT ON TABLE nyse_sessions IS 'The NYSE trading sessions (the exchange''s calendar, 1980 to about a year ahead, kept up to date by the commands): one row per session with its open and close. Join daily bars to it to find the sessions a ticker lacks.';
COMMENT ON COLUMN nyse_sessions.session_date IS 'The trading day (New York).';
COMMENT ON COLUMN nyse_sessions.open_at IS 'The regular open, an instant (09:30 New York).';
COMMENT ON COLUMN nyse_sessions.close_at IS 'The regular close, an instant (16:00 New York; 13:00 on an early close).';
COMMENT ON COLUMN nyse_sessions.early_close IS 'True when the session closes early (13:00 New York).';

-- Every daily bar, whichever command stored it.
CREATE OR REPLACE VIEW daily_bars AS
    SELECT 'etf'::text AS universe, ticker, trade_date, open, high, low, close, adj_close, volume, repaired, source, fetched_at
    FROM collected_daily_etf_ohlc
    UNION ALL
    SELECT 'benchmark', ticker, trade_date, open, high, low, close, adj_close, volume, repaired, source, fetched_at
    FROM collected_daily_benchmark_ohlc
    UNION ALL
    SELECT 'stock', ticker, trade_date, open, high, low, close, adj_close, volume, repaired, source, fetched_at
    FROM collected_daily_stock_history;
COMMENT ON VIEW daily_bars IS 'Every daily bar of the three daily tables, with the table it comes from as universe: etf (collected_daily_etf_ohlc), benchmark (collected_daily_benchmark_ohlc), stock (collected_daily_stock_history). A ticker may be in more than one (SPY: etf and benchmark).';
COMMENT ON COLUMN daily_bars.universe IS 'etf, benchmark or stock: the table the bar is stored in.';
COMMENT ON COLUMN daily_bars.ticker IS 'Yahoo''s symbol (BRK-B, ^GSPC).';
COMMENT ON COLUMN daily_bars.trade_date IS 'The NYSE session of the bar.';
COMMENT ON COLUMN daily_bars.open IS 'Open as Yahoo serves it: adjusted for splits up to the fetch, not for dividends (as high, low, close).';
COMMENT ON COLUMN daily_bars.close IS 'Close, split-adjusted as Yahoo serves it, not dividend-adjusted.';
COMMENT ON COLUMN daily_bars.adj_close IS 'Close adjusted for splits and dividends (Yahoo''s adjclose), restated when a new split or dividend calls for it.';
COMMENT ON COLUMN daily_bars.volume IS 'Shares traded, split-adjusted as Yahoo serves it.';
COMMENT ON COLUMN daily_bars.repaired IS 'True when yfinance''s price repair changed the bar (backfill --repair).';
COMMENT ON COLUMN daily_bars.source IS 'Where the bar came from (yahoo).';
COMMENT ON COLUMN daily_bars.fetched_at IS 'When the bar was last written: its load time.';

-- Adjusted OHLC: each price times the bar's adj_close / close (Yahoo's own adjustment factor).
CREATE OR REPLACE VIEW daily_bars_adjusted AS
    SELECT universe, ticker, trade_date, open * factor AS adj_open, high * factor AS adj_high, low * factor AS adj_low, adj_close,
           volume, factor AS adjustment_factor
    FROM (SELECT *, CASE WHEN close > 0 THEN adj_close / close END AS factor FROM daily_bars) AS bars;
COMMENT ON VIEW daily_bars_adjusted IS 'Daily bars with open, high and low adjusted for splits and dividends the way adj_close is: each times adj_close / close. For returns over dividends; backtests that trade at the open use adj_open.';
COMMENT ON COLUMN daily_bars_adjusted.adjustment_factor IS 'adj_close / close: 1 before no dividend; NULL when the bar has no adj_close.';
COMMENT ON COLUMN daily_bars_adjusted.volume IS 'Shares traded, split-adjusted as Yahoo serves it (dividends do not change a volume).';

-- The latest stored bar of each ticker in each universe.
CREATE OR REPLACE VIEW latest_daily_bars AS
    SELECT DISTINCT ON (universe, ticker) * FROM daily_bars ORDER BY universe, ticker, trade_date DESC;
COMMENT ON VIEW latest_daily_bars IS 'The latest stored daily bar of each ticker in each universe (daily_bars'' columns).';

-- Coverage: what is stored per ticker against the exchange's sessions.
CREATE OR REPLACE VIEW daily_coverage AS
    SELECT c.universe, c.ticker, c.first_date, c.last_date, c.stored_sessions,
           (SELECT count(*) FROM nyse_sessions s WHERE s.session_date BETWEEN c.first_date AND c.last_date) AS expected_sessions,
           (SELECT count(*) FROM nyse_sessions s WHERE s.session_date BETWEEN c.first_date AND c.last_date) - c.stored_sessions
               AS missing_sessions,
           (SELECT count(*) FROM nyse_sessions s WHERE s.session_date > c.last_date AND s.close_at <= now()) AS due_sessions
    FROM (SELECT universe, ticker, min(trade_date) AS first_date, max(trade_date) AS last_date, count(*) AS stored_sessions
          FROM daily_bars GROUP BY universe, ticker) AS c;
COMMENT ON VIEW daily_coverage IS 'Per ticker and universe: the first and last stored session, the sessions stored, the NYSE sessions between them (expected), those missing, and the closed sessions after the last one (due). Sessions before the first stored bar are not counted here: backfill-status --days N counts them for a range you name.';
COMMENT ON COLUMN daily_coverage.missing_sessions IS 'NYSE sessions between first_date and last_date without a stored bar.';
COMMENT ON COLUMN daily_coverage.due_sessions IS 'NYSE sessions closed since last_date: what the next backfill of the ticker would add.';

-- The latest intraday bar per ticker and interval.
CREATE OR REPLACE VIEW latest_intraday_bars AS
    SELECT DISTINCT ON (ticker, interval) * FROM collected_intraday_bars ORDER BY ticker, interval, bar_start DESC;
COMMENT ON VIEW latest_intraday_bars IS 'The latest stored intraday bar of each ticker and interval (collected_intraday_bars'' columns).';

-- The daily tables, said again in the words of the views (023 called Yahoo's split-adjusted OHLC "raw").
COMMENT ON TABLE collected_daily_etf_ohlc IS 'Daily bars of ETFs (SPY and the sector SPDRs; backfill --table etf), one row per ticker and NYSE session: OHLC and volume as Yahoo serves them (split-adjusted, not dividend-adjusted), adj_close (splits and dividends, restated when a new action calls for it). repaired: changed by yfinance''s price repair (backfill --repair). daily_bars has every daily table in one.';
COMMENT ON TABLE collected_daily_stock_history IS 'Daily bars of stocks (backfill, the pipeline''s stock history), one row per ticker and NYSE session: OHLC and volume as Yahoo serves them (split-adjusted, not dividend-adjusted), adj_close (splits and dividends, restated when a new action calls for it). repaired: changed by yfinance''s price repair. daily_bars has every daily table in one.';
-- The daily tables' columns (the views above repeat them for their own).
COMMENT ON COLUMN collected_daily_etf_ohlc.trade_date IS 'The NYSE session of the bar.';
COMMENT ON COLUMN collected_daily_etf_ohlc.close IS 'Close, split-adjusted as Yahoo serves it, not dividend-adjusted (as open, high, low).';
COMMENT ON COLUMN collected_daily_etf_ohlc.adj_close IS 'Close adjusted for splits and dividends (Yahoo''s adjclose), restated when a new split or dividend calls for it.';
COMMENT ON COLUMN collected_daily_etf_ohlc.volume IS 'Shares traded, split-adjusted as Yahoo serves it.';
COMMENT ON COLUMN collected_daily_etf_ohlc.fetched_at IS 'When the bar was last written: its load time.';
COMMENT ON COLUMN collected_daily_stock_history.trade_date IS 'The NYSE session of the bar.';
COMMENT ON COLUMN collected_daily_stock_history.close IS 'Close, split-adjusted as Yahoo serves it, not dividend-adjusted (as open, high, low).';
COMMENT ON COLUMN collected_daily_stock_history.adj_close IS 'Close adjusted for splits and dividends (Yahoo''s adjclose), restated when a new split or dividend calls for it.';
COMMENT ON COLUMN collected_daily_stock_history.volume IS 'Shares traded, split-adjusted as Yahoo serves it.';
COMMENT ON COLUMN collected_daily_stock_history.fetched_at IS 'When the bar was last written: its load time.';
COMMENT ON COLUMN collected_daily_benchmark_ohlc.trade_date IS 'The NYSE session of the bar.';
COMMENT ON COLUMN collected_daily_benchmark_ohlc.adj_close IS 'Close adjusted for splits and dividends (Yahoo''s adjclose).';
COMMENT ON COLUMN collected_daily_benchmark_ohlc.fetched_at IS 'When the bar was last written: its load time.';
COMMENT ON COLUMN collected_intraday_bars.interval IS 'Yahoo''s bar size: 1m, 2m, 5m, 15m, 30m, 90m or 1h.';
COMMENT ON COLUMN collected_intraday_bars.fetched_at IS 'When the bar was last written: its load time.';
COMMENT ON COLUMN corporate_actions.value IS 'For a split the ratio (4 for a 4-for-1), for a dividend the cash amount per share.';
COMMENT ON COLUMN txn_events.base_date IS 'The session of the base bar: the last bar whose close (16:00 New York, or the early close) is at or before event_time.';
COMMENT ON COLUMN txn_events.ret_1d IS 'Return from the base bar to 1 bar after it, on adj_close (ret_5d, ret_20d: 5 and 20 bars after).';
COMMENT ON COLUMN txn_events.ret_5d IS 'Return from the base bar to 5 bars (NYSE sessions with a stored bar) after it, on adj_close.';
COMMENT ON COLUMN txn_events.ret_20d IS 'Return from the base bar to 20 bars after it, on adj_close.';
COMMENT ON COLUMN txn_events.excess_ret_1d IS 'ret_1d minus SPY''s return between the same two dates (excess_ret_5d, excess_ret_20d likewise).';
COMMENT ON COLUMN txn_events.volatility_20d IS 'Sample standard deviation (ddof 1) of the 20 daily log returns ending at the base bar, annualized: times the square root of 252.';
COMMENT ON COLUMN txn_events.volume_ratio IS 'Volume of the bar after the base bar over the mean volume of the 20 bars ending at the base bar.';
COMMENT ON COLUMN txn_events.reaction IS 'positive, negative or neutral: excess_ret_1d against one daily sigma (volatility_20d / sqrt(252)).';
COMMENT ON COLUMN txn_events.valuation_status IS 'ok, no_data or error; NULL while the event waits to be valued.';

-- "All tickers on date D" without a scan of each daily table.
CREATE INDEX IF NOT EXISTS collected_daily_etf_ohlc_trade_date ON collected_daily_etf_ohlc (trade_date);
CREATE INDEX IF NOT EXISTS collected_daily_stock_history_trade_date ON collected_daily_stock_history (trade_date);
CREATE INDEX IF NOT EXISTS collected_daily_benchmark_ohlc_trade_date ON collected_daily_benchmark_ohlc (trade_date);

-- A role that reads the data and the views, and nothing of the machinery: GRANT market_backfill_reader
-- TO a login role (a BI tool, an analyst). Made where the migrating user may make roles; said otherwise.
DO $$
DECLARE
    relation text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'market_backfill_reader') THEN
        IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
            RAISE NOTICE 'market_backfill_reader not made: % may not create roles', current_user;
            RETURN;
        END IF;
        BEGIN
            CREATE ROLE market_backfill_reader NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- another database of the cluster made it a moment ago (roles belong to the cluster)
        END;
    END IF;
    -- A user who may not grant here (a schema someone else owns) keeps the tool working: said, not fatal.
    BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO market_backfill_reader', current_schema());
    FOREACH relation IN ARRAY ARRAY[
        'collected_daily_etf_ohlc', 'collected_daily_stock_history', 'collected_daily_benchmark_ohlc', 'collected_intraday_bars',
        'corporate_actions', 'collected_meta_etf', 'collected_shares_outstanding', 'analytics_trending_sectors',
        'analytics_trending_stocks', 'analytics_portfolio_allocation', 'txn_events', 'scalp_ticks', 'scalp_1m_bars',
        'swing_bars_10m', 'scalp_gaps', 'nyse_sessions', 'daily_bars', 'daily_bars_adjusted', 'latest_daily_bars', 'daily_coverage',
        'latest_intraday_bars', 'collected_weekly_stock_bars', 'collected_monthly_stock_bars', 'collected_weekly_etf_bars',
        'collected_monthly_etf_bars']
    LOOP
        EXECUTE format('GRANT SELECT ON %I TO market_backfill_reader', relation);
    END LOOP;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE NOTICE 'market_backfill_reader not granted the data: % may not grant here', current_user;
    END;
END
$$;
