-- backfill --repair: bars that went through yfinance's price repair (100x unit mix-ups, missing
-- dividend adjustments, bad splits) and were changed by it are marked, so a user can see what
-- changed. Bars fetched without --repair are false.
ALTER TABLE collected_daily_etf_ohlc ADD COLUMN IF NOT EXISTS repaired boolean NOT NULL DEFAULT false;
ALTER TABLE collected_daily_stock_history ADD COLUMN IF NOT EXISTS repaired boolean NOT NULL DEFAULT false;
ALTER TABLE collected_daily_benchmark_ohlc ADD COLUMN IF NOT EXISTS repaired boolean NOT NULL DEFAULT false;
ALTER TABLE collected_intraday_bars ADD COLUMN IF NOT EXISTS repaired boolean NOT NULL DEFAULT false;
