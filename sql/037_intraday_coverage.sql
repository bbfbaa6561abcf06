-- Coverage of the intraday bars, as daily_coverage gives it for the daily ones: per ticker and
-- interval, what is stored against the exchange's sessions.
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

-- Readable by the read-only role, as the other views.
DO $$
DECLARE
    relation text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'market_backfill_reader') THEN
        RETURN;
    END IF;
    FOREACH relation IN ARRAY ARRAY['intraday_coverage']
    LOOP
        EXECUTE format('GRANT SELECT ON %I TO market_backfill_reader', relation);
    END LOOP;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'market_backfill_reader not granted intraday_coverage: % may not grant here', current_user;
END $$;
