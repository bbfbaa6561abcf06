-- The intraday table gets the views the daily ones have (024): coverage and adjusted prices.

-- Coverage, as daily_coverage: per ticker and interval, what is stored against the exchange's sessions.
CREATE OR REPLACE VIEW intraday_coverage AS
    SELECT c.ticker, c.interval, c.first_date, c.last_date, c.stored_sessions,
           (SELECT count(*) FROM nyse_sessions s WHERE s.session_date BETWEEN c.first_date AND c.last_date) AS expected_sessions,
           (SELECT count(*) FROM nyse_sessions s WHERE s.session_date BETWEEN c.first_date AND c.last_date) - c.stored_sessions
               AS missing_sessions,
           (SELECT count(*) FROM nyse_sessions s WHERE s.session_date > c.last_date AND s.close_at <= now()) AS due_sessions,
           c.bars
    FROM (SELECT ticker, interval, min(session_date) AS first_date, max(session_date) AS last_date,
                 count(DISTINCT session_date) AS stored_sessions, count(*) AS bars
          FROM intraday_bars GROUP BY ticker, interval) AS c;
COMMENT ON VIEW intraday_coverage IS 'Per ticker and interval: the first and last session with a stored intraday bar, the sessions with one, the NYSE sessions between them (expected), those without (missing), and the closed sessions after the last one (due; Yahoo serves 1m bars for the last 30 days only, 2m to 90m for 60, 1h for 730). backfill-status --table intraday --interval I counts a range you name.';
COMMENT ON COLUMN intraday_coverage.ticker IS 'Yahoo''s symbol.';
COMMENT ON COLUMN intraday_coverage.interval IS 'Yahoo''s bar size: 1m, 2m, 5m, 15m, 30m, 90m or 1h.';
COMMENT ON COLUMN intraday_coverage.first_date IS 'The first NYSE session with a stored bar of the ticker and interval.';
COMMENT ON COLUMN intraday_coverage.last_date IS 'The last NYSE session with a stored bar of the ticker and interval.';
COMMENT ON COLUMN intraday_coverage.stored_sessions IS 'Sessions from first_date to last_date with at least one stored bar.';
COMMENT ON COLUMN intraday_coverage.expected_sessions IS 'NYSE sessions from first_date to last_date.';
COMMENT ON COLUMN intraday_coverage.missing_sessions IS 'NYSE sessions between first_date and last_date without a stored bar.';
COMMENT ON COLUMN intraday_coverage.due_sessions IS 'NYSE sessions closed since last_date: what the next backfill of the ticker and interval would add, within Yahoo''s window.';
COMMENT ON COLUMN intraday_coverage.bars IS 'Bars stored of the ticker and interval, pre- and post-market ones included.';

-- Adjusted OHLC of the intraday bars, as daily_bars_adjusted gives it: each price times the factor
-- Yahoo gives the session's daily bar (adj_close / close). Intraday prices are split-adjusted as
-- served and restated for later splits (intraday_store.py), as the daily close is: the factor adds
-- the dividends.
CREATE OR REPLACE VIEW intraday_bars_adjusted AS
    SELECT i.ticker, i.interval, i.bar_start_at, i.session_date, i.regular, i.open * d.factor AS adj_open,
           i.high * d.factor AS adj_high, i.low * d.factor AS adj_low, i.close * d.factor AS adj_close, i.volume,
           d.factor AS adjustment_factor
    FROM intraday_bars i
    LEFT JOIN LATERAL (SELECT CASE WHEN b.close > 0 THEN b.adj_close / b.close END AS factor FROM daily_bars b
                       WHERE b.ticker = i.ticker AND b.trade_date = i.session_date ORDER BY b.universe LIMIT 1) AS d ON true;
COMMENT ON VIEW intraday_bars_adjusted IS 'Intraday bars with open, high, low and close adjusted for splits and dividends as the daily adj_close is: each times the adj_close / close of the same ticker''s daily bar of the session. NULL prices where that daily bar is not stored (backfill the daily bars of the range too).';
COMMENT ON COLUMN intraday_bars_adjusted.ticker IS 'Yahoo''s symbol.';
COMMENT ON COLUMN intraday_bars_adjusted.interval IS 'Yahoo''s bar size: 1m, 2m, 5m, 15m, 30m, 90m or 1h.';
COMMENT ON COLUMN intraday_bars_adjusted.bar_start_at IS 'The start of the bar, UTC.';
COMMENT ON COLUMN intraday_bars_adjusted.session_date IS 'The NYSE session (New York trading day) the bar belongs to.';
COMMENT ON COLUMN intraday_bars_adjusted.regular IS 'False for a pre- or post-market bar.';
COMMENT ON COLUMN intraday_bars_adjusted.adj_open IS 'open times adjustment_factor.';
COMMENT ON COLUMN intraday_bars_adjusted.adj_high IS 'high times adjustment_factor.';
COMMENT ON COLUMN intraday_bars_adjusted.adj_low IS 'low times adjustment_factor.';
COMMENT ON COLUMN intraday_bars_adjusted.adj_close IS 'close times adjustment_factor.';
COMMENT ON COLUMN intraday_bars_adjusted.volume IS 'Shares traded in the bar, split-adjusted as Yahoo serves it (dividends do not change a volume).';
COMMENT ON COLUMN intraday_bars_adjusted.adjustment_factor IS 'adj_close / close of the ticker''s daily bar of the session; NULL when that bar is not stored.';

-- Readable by the read-only role, as the other views.
DO $$
DECLARE
    relation text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'market_backfill_reader') THEN
        RETURN;
    END IF;
    FOREACH relation IN ARRAY ARRAY['intraday_coverage', 'intraday_bars_adjusted']
    LOOP
        EXECUTE format('GRANT SELECT ON %I TO market_backfill_reader', relation);
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'market_backfill_reader not granted the intraday views: % may not grant here', current_user;
END $$;
