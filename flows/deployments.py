"""Deployments: what runs when (all times UTC), on one machine or on several.

- ``daily-pipeline/weekdays-0900-utc``: the five-stage pipeline, Monday to Friday at 09:00 UTC,
  as **one run with the stages in order** (one subflow each). Chosen over one run per stage at
  09:00, 10:00, ... 13:00 because each stage reads what the one before wrote: fixed hourly slots
  either wait an hour for nothing or start a stage before its input exists (a rate-limit cool-down
  easily lasts longer than an hour). In one run a stage starts when its input is committed; a
  stopped run prints (and its artifact shows) the ``--stages`` command that resumes it, and any
  stage can still be run alone.
- ``daily-pipeline/retention-daily-0600-utc``: the retention stage alone, every day at 06:00 UTC
  (before the markets and the pipeline): deletes rows outside their windows in small batches.
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

from flows import daily_pipeline as pipeline_flow
from flows import etf_backfill as etf_flow
from flows import event_valuation as valuation_flow
from flows import jsonl_ingest as jsonl_flow
from flows import staggered_sector_backfill as staggered_flow
from flows.params import defaults

# Module-level flows: the entrypoints that prefect.yaml names (flows/deployments.py:<name>).
daily_pipeline = pipeline_flow.build_flow()
staggered_sector_backfill = staggered_flow.build_flow()
event_valuation = valuation_flow.build_flow(concurrency=10)
jsonl_ingest = jsonl_flow.build_flow(concurrency=4)
etf_backfill = etf_flow.build_flow()  # no schedule of its own (stage 1 of the pipeline); for sharded ad-hoc runs on a pool

# (flow, deployment name, cron, parameters: every one spelled out so the UI shows them all; the
# defaults come from each flow's one parameter list, so a new parameter appears here by itself)
SCHEDULES: list[tuple[Any, str, str, dict[str, Any]]] = [
    (daily_pipeline, "weekdays-0900-utc", "0 9 * * 1-5", defaults(pipeline_flow.PARAMS)),
    (daily_pipeline, "retention-daily-0600-utc", "0 6 * * *", defaults(pipeline_flow.PARAMS, stages=["retention"])),
    (staggered_sector_backfill, "weekly-saturday-0600-utc", "0 6 * * 6",
     defaults(staggered_flow.PARAMS, skip_existing=True, args=["--skip-existing"])),
    (event_valuation, "daily-2230-utc", "30 22 * * *", defaults(valuation_flow.PARAMS)),
    (jsonl_ingest, "every-10-minutes", "*/10 * * * *",  # the source document's layout
     defaults(jsonl_flow.PARAMS, swing="config/observer/swing", scalp="config/observer/scalp", gaps="logs/system/gap_*.jsonl")),
]


def deployments(work_pool: str | None = None) -> list[Any]:
    """The RunnerDeployments (schedules in UTC), for ``serve`` or a work pool."""
    from prefect.schedules import Cron

    return [
        flow.to_deployment(name=name, schedules=[Cron(cron, timezone="UTC")], parameters=params, work_pool_name=work_pool,
                           tags=["market-backfill"],
                           description=(flow.description or "").strip().splitlines()[0] if flow.description else None)
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
