-- What each table and view holds, in the catalog itself (psql \d+, any SQL client's schema view):
-- the database is what users query, so it says what it is without this repository at hand.
-- Data the commands collect:
COMMENT ON TABLE collected_daily_etf_ohlc IS 'Daily bars of ETFs (SPY and the sector SPDRs; backfill --table etf), one row per ticker and NYSE session: raw OHLC, adj_close (split- and dividend-adjusted, restated when a new action calls for it), volume. repaired: changed by yfinance''s price repair (backfill --repair).';
COMMENT ON TABLE collected_daily_stock_history IS 'Daily bars of stocks (backfill, the pipeline''s stock history), one row per ticker and NYSE session: raw OHLC, adj_close (split- and dividend-adjusted, restated when a new action calls for it), volume. repaired: changed by yfinance''s price repair.';
COMMENT ON TABLE collected_daily_benchmark_ohlc IS 'Daily bars of the benchmarks the pipeline compares with (SPY), one row per ticker and NYSE session; the shape of collected_daily_etf_ohlc.';
COMMENT ON TABLE collected_intraday_bars IS 'Intraday bars (backfill --interval 1h .. 1m), one row per ticker, interval and bar start (UTC), as Yahoo served them: prices adjusted for splits up to the fetch, and restated for later ones. Partitioned by month of bar_start.';
COMMENT ON COLUMN collected_intraday_bars.bar_start IS 'The start of the bar, UTC (09:30 New York is the first regular bar of a session).';
COMMENT ON COLUMN collected_intraday_bars.session IS 'The NYSE session (New York trading day) the bar belongs to.';
COMMENT ON COLUMN collected_intraday_bars.regular IS 'False for a pre- or post-market bar (stored only with --prepost).';
COMMENT ON COLUMN collected_intraday_bars.repaired IS 'Changed by yfinance''s price repair (backfill --repair).';
COMMENT ON TABLE corporate_actions IS 'Splits (value: the ratio, 4 for 4-for-1) and dividends (value: the amount) seen in fetched data, by ex-date.';
COMMENT ON TABLE collected_meta_etf IS 'Sector ETF holdings by as-of date (the pipeline''s holdings stage): State Street''s daily file, else Yahoo''s top holdings.';
COMMENT ON TABLE collected_shares_outstanding IS 'Shares outstanding as Yahoo reported them over time, so a past as-of date is weighted by the figure known then.';
COMMENT ON TABLE analytics_trending_sectors IS 'Sector ETFs ranked by their return over 5, 10 and 20 sessions against SPY, per as-of date (the pipeline''s trending stage).';
COMMENT ON TABLE analytics_trending_stocks IS 'The stocks of the top sectors ranked by their return against SPY, per as-of date and window.';
COMMENT ON TABLE analytics_portfolio_allocation IS 'Market-cap weights of the allocation per as-of date, from shares outstanding known on that date (point in time).';
COMMENT ON TABLE txn_events IS 'Events imported from CSV (event-valuation --import-csv) and the returns, excess returns, momentum and volatility written back by the valuation.';
COMMENT ON TABLE scalp_ticks IS 'Ticks from the observer''s scalp JSONL files (jsonl-ingest), each stored once (tick_key) with the file and line that brought it. Partitioned by UTC day of event_time.';
COMMENT ON TABLE scalp_1m_bars IS 'One-minute bars aggregated from scalp_ticks per symbol and minute, with tick counts and coverage (ticks received / 120). Partitioned by UTC day.';
COMMENT ON TABLE swing_bars_10m IS 'Ten-minute bars from the observer''s swing JSONL files: the version of the latest file (by the time in its name), then line.';
COMMENT ON TABLE scalp_gaps IS 'The observer''s gap ledger: stretches without data, their length, scope and reason.';
-- Views:
COMMENT ON VIEW collected_weekly_stock_bars IS 'Weekly bars (ISO weeks from Monday) derived from collected_daily_stock_history: first open, highest high, lowest low, last close and adj_close, volume summed, sessions counted.';
COMMENT ON VIEW collected_monthly_stock_bars IS 'Monthly bars derived from collected_daily_stock_history, as collected_weekly_stock_bars for calendar months.';
COMMENT ON VIEW collected_weekly_etf_bars IS 'Weekly bars derived from collected_daily_etf_ohlc, as collected_weekly_stock_bars.';
COMMENT ON VIEW collected_monthly_etf_bars IS 'Monthly bars derived from collected_daily_etf_ohlc, as collected_monthly_stock_bars.';
-- The machinery (what runs, what was fetched, what was loaded):
COMMENT ON TABLE backfill_runs IS 'Every run of a fetching command: its command line, parameters, status (running, done, failed, rate_limited, interrupted) and summary line.';
COMMENT ON TABLE backfill_run_items IS 'Each ticker of a run: pending, done, skipped, failed or no_data, and the rows it added or changed.';
COMMENT ON TABLE rate_budgets IS 'The request budget per source, shared by every process and machine on this database (GCRA slots, the rate learned after 429s, cool-downs, the daily quota).';
COMMENT ON TABLE price_fetch_coverage IS 'Date ranges already fetched per ticker and table, so a range where the source had no bar is not asked for again.';
COMMENT ON TABLE price_changes IS 'Which stored daily bars changed when, so the event valuation revalues the events whose window overlaps a change.';
COMMENT ON TABLE shares_outstanding_fetches IS 'How far shares outstanding were fetched per ticker.';
COMMENT ON TABLE intraday_sessions_fetched IS 'The sessions fetched whole per ticker and interval (at least 30 minutes after their close): the plan skips them, whatever the number of bars Yahoo had.';
COMMENT ON TABLE intraday_split_restatements IS 'Each split applied to the stored intraday bars of earlier sessions (once), and how many bars it restated.';
COMMENT ON TABLE jsonl_file_checkpoints IS 'How far each JSONL file is loaded (bytes, lines, the SHA-256 of that prefix), its origin and the UTC days of its ticks.';
COMMENT ON TABLE jsonl_origins IS 'Where JSONL files come from (host and folder), so files of the same name under two roots are two files.';
COMMENT ON TABLE jsonl_rejects IS 'JSONL lines that could not be loaded, with the reason and the raw line.';
COMMENT ON TABLE scalp_tick_copies IS 'Lines carrying a tick already stored from another line (a copied or rotated file): they take its place if that file is forgotten.';
COMMENT ON TABLE swing_bar_versions IS 'Every swing line as loaded (its version of the bar), so the bar another file carries is never lost when a file is forgotten.';
COMMENT ON TABLE partition_moves IS 'Tables being moved into day partitions by an upgrade, resumable after a kill.';
