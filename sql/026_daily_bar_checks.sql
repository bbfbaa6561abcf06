-- The rules every daily bar is checked against before it is stored (tasks/core/bar_checks.py), in the
-- database too: whatever writes here (a user's own loader, a hand UPDATE) keeps them. NOT VALID: rows
-- stored before are not scanned again (they passed the same rules in the loader), new writes are checked.
ALTER TABLE collected_daily_etf_ohlc ADD CONSTRAINT collected_daily_etf_ohlc_sane
    CHECK (high >= low AND open >= 0 AND low >= 0 AND close >= 0 AND adj_close >= 0 AND volume >= 0) NOT VALID;
ALTER TABLE collected_daily_stock_history ADD CONSTRAINT collected_daily_stock_history_sane
    CHECK (high >= low AND open >= 0 AND low >= 0 AND close >= 0 AND adj_close >= 0 AND volume >= 0) NOT VALID;
ALTER TABLE collected_daily_benchmark_ohlc ADD CONSTRAINT collected_daily_benchmark_ohlc_sane
    CHECK (high >= low AND open >= 0 AND low >= 0 AND close >= 0 AND adj_close >= 0 AND volume >= 0) NOT VALID;
