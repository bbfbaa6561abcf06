-- Valuation multiples at event time from a fundamentals provider (FMP), filled by event valuation
-- when a key is configured. fundamentals_at: when they were computed (NULL: still to do);
-- fundamentals_error: why they are NULL when the provider had nothing usable.
ALTER TABLE txn_events ADD COLUMN IF NOT EXISTS market_cap double precision;
ALTER TABLE txn_events ADD COLUMN IF NOT EXISTS pe_ttm double precision;
ALTER TABLE txn_events ADD COLUMN IF NOT EXISTS ps_ttm double precision;
ALTER TABLE txn_events ADD COLUMN IF NOT EXISTS fundamentals_at timestamptz;
ALTER TABLE txn_events ADD COLUMN IF NOT EXISTS fundamentals_error text;
