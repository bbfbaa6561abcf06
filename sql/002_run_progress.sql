-- Each CLI run and each ticker's outcome, written in the same transaction as that ticker's rows,
-- so a crash loses nothing that was reported as done, and --resume knows where to go on.
CREATE TABLE IF NOT EXISTS backfill_runs (
    run_id       bigserial   PRIMARY KEY,
    flow         text        NOT NULL,
    command      text        NOT NULL,
    params       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status       text        NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'done', 'failed', 'rate_limited', 'interrupted')),
    summary      text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX IF NOT EXISTS backfill_runs_flow_started ON backfill_runs (flow, started_at DESC);

CREATE TABLE IF NOT EXISTS backfill_run_items (
    run_id      bigint      NOT NULL REFERENCES backfill_runs (run_id) ON DELETE CASCADE,
    position    integer     NOT NULL,
    ticker      text        NOT NULL,
    status      text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'done', 'failed', 'skipped')),
    detail      text,
    rows_new    integer     NOT NULL DEFAULT 0,
    rows_updated integer    NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, ticker)
);
