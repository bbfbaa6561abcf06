"""Deployments: what runs when (all times UTC), on one machine or on several.

- ``daily-pipeline/weekdays-0900-utc``: the five-stage pipeline, Monday to Friday at 09:00 UTC,
  as **one run with the stages in order** (one subflow each). Chosen over one run per stage at
  09:00, 10:00, ... 13:00 because each stage reads what the one before wrote: fixed hourly slots
  either wait an hour for nothing or start a stage before its input exists (a rate-limit cool-down
  easily lasts longer than an hour). In one run a stage starts when its input is committed; a
  stopped run prints (and its artifact shows) the ``--stages`` command that resumes it, and any
  stage can still be run alone.
- ``staggered-sector-backfill/weekly-saturday-0600-utc``: the 11 sector ETFs, one at a time, 5
  minutes apart, ``--skip-existing``, every Saturday 06:00 UTC (markets closed, budget idle).
- ``event-valuation/daily-2230-utc``: values new and pending events every day at 22:30 UTC, after
  the US close (16:00 New York is 20:00 or 21:00 UTC) and the evening's bars.
- ``jsonl-ingest/every-10-minutes``: loads what the observer's JSONL files grew by since the last
  run (per-file checkpoints), every 10 minutes, as the source document's incremental mode does.

A deployment run stopped by a rate limit schedules its own continuation (``flows/prefect_glue.py``).

One machine (Prefect server + this process runs them):

    prefect server start --background
    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.deployments serve

Several machines: ``prefect.yaml`` holds the same deployments for a process work pool; see README.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from flows.daily_pipeline import build_flow as build_pipeline
from flows.etf_backfill import build_flow as build_etf
from flows.event_valuation import build_flow as build_valuation
from flows.jsonl_ingest import build_flow as build_jsonl
from flows.staggered_sector_backfill import build_flow as build_staggered
from tasks.sources.budget import DEFAULT_NAME, DEFAULT_RATE

# Module-level flows: the entrypoints that prefect.yaml names (flows/deployments.py:<name>).
daily_pipeline = build_pipeline()
staggered_sector_backfill = build_staggered()
event_valuation = build_valuation(concurrency=10)
jsonl_ingest = build_jsonl(concurrency=4)
etf_backfill = build_etf()  # no schedule of its own (stage 1 of the pipeline); for sharded ad-hoc runs on a pool

# (flow, deployment name, cron, parameters: every one spelled out so the UI shows them all)
SCHEDULES: list[tuple[Any, str, str, dict[str, Any]]] = [
    (daily_pipeline, "weekdays-0900-utc", "0 9 * * 1-5", {
        "stages": ["etf-ohlc", "etf-holdings", "trending", "stock-history", "allocation"], "as_of": None, "days": 30,
        "top_sectors": 3, "delay": 1.0, "rate": DEFAULT_RATE, "rate_budget": DEFAULT_NAME, "rate_limit_sleep": 900.0,
        "max_retries": 3, "retry_wait": 1.0, "timeout": 10.0, "cache_dir": ".cache",
    }),
    (staggered_sector_backfill, "weekly-saturday-0600-utc", "0 6 * * 6", {
        "tickers": None, "days": 20, "end_date": None, "delay_minutes": 5.0, "skip_existing": True, "refresh": False,
        "rate_limit_sleep": 900.0, "max_retries": 3, "retry_wait": 1.0, "timeout": 10.0, "cache_dir": ".cache", "resume": False,
        "args": ["--skip-existing"], "prog": "staggered-backfill", "rate": DEFAULT_RATE, "rate_budget": DEFAULT_NAME,
    }),
    (event_valuation, "daily-2230-utc", "30 22 * * *", {
        "import_csv": None, "skip_bad_rows": False, "import_only": False, "overwrite": False, "tickers": None, "concurrency": 10,
        "group_size": None, "delay": 0.1, "max_retries": 3, "retry_wait": 1.0, "timeout": 10.0, "rate_limit_sleep": 900.0,
        "refresh": False, "cache_dir": ".cache", "as_of": None, "command": "event-valuation", "rate": DEFAULT_RATE,
        "rate_budget": DEFAULT_NAME, "fundamentals": "auto", "fmp_daily_limit": 250, "fmp_rate": "60/min",
    }),
    (jsonl_ingest, "every-10-minutes", "*/10 * * * *", {"root": "config/observer", "concurrency": 4, "batch_size": 10_000}),
]


def deployments(work_pool: str | None = None) -> list[Any]:
    """The RunnerDeployments (schedules in UTC), for ``serve`` or a work pool."""
    from prefect.schedules import Cron

    return [
        flow.to_deployment(name=name, schedules=[Cron(cron, timezone="UTC")], parameters=params, work_pool_name=work_pool,
                           tags=["market-backfill"], description=(flow.description or "").strip().splitlines()[0] if flow.description else None)
        for flow, name, cron, params in SCHEDULES
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] != ["serve"]:
        print("usage: python -m flows.deployments serve   (runs the scheduled deployments in this process)", file=sys.stderr)
        return 2
    from prefect import serve

    serve(*deployments())
    return 0


if __name__ == "__main__":
    sys.exit(main())
