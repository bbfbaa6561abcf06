-- One request budget per source, shared by every thread, process and machine that uses this
-- database. A request reserves the next free slot (GCRA: next_slot moves 60/rate seconds per
-- request) in one UPDATE under the row lock, timed by the database's clock, so callers on
-- different machines need no clock agreement.
CREATE TABLE IF NOT EXISTS rate_budgets (
    name            text             PRIMARY KEY,
    ceiling_per_min double precision NOT NULL CHECK (ceiling_per_min > 0),  -- the configured rate
    rate_per_min    double precision NOT NULL CHECK (rate_per_min > 0),     -- the learned safe rate
    next_slot       timestamptz      NOT NULL DEFAULT now(),   -- the earliest time the next request may go
    last_slot       timestamptz,                               -- the slot granted by the last reservation
    cooldown_until  timestamptz,
    cooldown_s      double precision,          -- length of the last cool-down (doubles while a block lasts)
    streak          bigint           NOT NULL DEFAULT 0,  -- requests granted since the last rate change
    granted         bigint           NOT NULL DEFAULT 0,
    limited         bigint           NOT NULL DEFAULT 0,  -- 429 answers reported
    day             date,                      -- UTC day of day_count, for daily quotas
    day_count       bigint           NOT NULL DEFAULT 0,
    last_429_at     timestamptz,
    updated_at      timestamptz      NOT NULL DEFAULT now()
);

-- Which stored bars changed when (rows inserted or revised), so the event valuation revalues the
-- events whose price window overlaps a change made after they were valued.
CREATE TABLE IF NOT EXISTS price_changes (
    table_name  text        NOT NULL,
    ticker      text        NOT NULL,
    first_date  date        NOT NULL,
    last_date   date        NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS price_changes_ticker ON price_changes (ticker, changed_at);
