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
- ``backfill/on-demand``: no schedule; the tickers or universe and the range a run names.
- ``backfill/watchlist-weekdays-2215-utc``: ``watchlist.txt`` (in the checkout), Monday to Friday at
  22:15 UTC, after the US close: daily and 1-minute bars of the last 5 sessions, so a day a run
  missed fills itself and the stored 1-minute history grows past the 30 days Yahoo keeps.
- ``etf-backfill/shards``: no schedule; one run per ticker list (``tickers=[...]``) shards a big
  backfill over the pool's workers, each shard with a continuation of its own.

A deployment run stopped by a rate limit schedules its own continuation (``flows/orchestration/glue.py``).

One machine (the project's Prefect server on PostgreSQL, then this process runs them):

    prefect-local start        # prints the PREFECT_API_URL and PREFECT_API_AUTH_STRING to export
    python -m flows.deployments serve

Several machines: ``prefect.yaml`` holds the same deployments for a process work pool; see docs/operations.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows import backfill as backfill_flow
from flows import daily_pipeline as pipeline_flow
from flows import etf_backfill as etf_flow
from flows import event_valuation as valuation_flow
from flows import jsonl_ingest as jsonl_flow
from flows import staggered_sector_backfill as staggered_flow
from flows.cli import run_as_command
from flows.params import defaults
from tasks.core.errors import BadInput, Outcome

# Module-level flows: the entrypoints that prefect.yaml names (flows/deployments.py:<name>).
daily_pipeline = pipeline_flow.build_flow()
staggered_sector_backfill = staggered_flow.build_flow()
event_valuation = valuation_flow.build_flow()
jsonl_ingest = jsonl_flow.build_flow()
backfill = backfill_flow.build_flow()
etf_backfill = etf_flow.build_flow()  # no schedule of its own (stage 1 of the pipeline): for sharded runs on a pool

# (flow, deployment name, cron, parameters: every one spelled out so the UI shows them all; the
# defaults come from each flow's one parameter list, so a new parameter appears here by itself)
# The deployments that run one at a time (see prefect.yaml: the same, for a work pool).
ONE_AT_A_TIME = {"weekdays-0900-utc", "retention-daily-0600-utc", "weekly-saturday-0600-utc", "every-10-minutes",
                 "watchlist-weekdays-2215-utc"}
SCHEDULES: list[tuple[Any, str, str | None, dict[str, Any]]] = [
    (daily_pipeline, "weekdays-0900-utc", "0 9 * * 1-5", defaults(pipeline_flow.PARAMS)),
    (daily_pipeline, "retention-daily-0600-utc", "0 6 * * *", defaults(pipeline_flow.PARAMS, stages=["retention"])),
    (staggered_sector_backfill, "weekly-saturday-0600-utc", "0 6 * * 6",
     defaults(staggered_flow.PARAMS, skip_existing=True)),
    (event_valuation, "daily-2230-utc", "30 22 * * *", defaults(valuation_flow.PARAMS)),
    (jsonl_ingest, "every-10-minutes", "*/10 * * * *",  # the source document's layout
     defaults(jsonl_flow.PARAMS, swing="config/observer/swing", scalp="config/observer/scalp", gaps="logs/system/gap_*.jsonl")),
    (etf_backfill, "shards", None, defaults(etf_flow.PARAMS)),  # no schedule: one run per ticker list
    (backfill, "on-demand", None, defaults(backfill_flow.PARAMS)),
    (backfill, "watchlist-weekdays-2215-utc", "15 22 * * 1-5", defaults(backfill_flow.PARAMS, universe="watchlist.txt", days=5,
                                                                                 interval="1d,1m")),
]


def deployments(work_pool: str | None = None) -> list[Any]:
    """The RunnerDeployments (schedules in UTC), for ``serve`` or a work pool.

    Their entrypoint is this module (where ``prefect.yaml`` points too): Prefect would otherwise
    record ``flows/params.py``, where ``flow_function`` builds the functions, and no run could load it.
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    entry = Path(__file__).resolve()
    try:
        entry = entry.relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    out = []
    for flow, name, cron, params in SCHEDULES:
        summary = (flow.description or "").strip().splitlines()[0] if flow.description else None
        limit = (ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE) if name in ONE_AT_A_TIME
                 else None)
        deployment = flow.to_deployment(name=name, schedules=[Cron(cron, timezone="UTC")] if cron else [], parameters=params,
                                        work_pool_name=work_pool, tags=["market-backfill"], description=summary,
                                        concurrency_limit=limit)
        deployment.entrypoint = f"{entry.as_posix()}:{flow.fn.__name__}"
        out.append(deployment)
    return out


def deployed_to_pools(names: Sequence[str]) -> list[str]:
    """Which of ``names`` ("flow/deployment") the server already has as work-pool deployments."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found = []
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                existing = client.read_deployment_by_name(name)
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                found.append(f"{name} (work pool {existing.work_pool_name})")
    return found


def serve_all() -> Outcome:
    """Serve every deployment in this process; refuses when the server holds them for a work pool
    (``prefect deploy --all``): serving would rewrite those in place and strand their workers.

    Raises:
        BadInput: some deployment is already a work-pool deployment.
    """
    from prefect import serve

    served = deployments()
    taken = deployed_to_pools([f"{d.flow_name}/{d.name}" for d in served])
    if taken:
        raise BadInput("these deployments are deployed to a work pool, and serve would overwrite them: " + ", ".join(taken)
                       + "; run a worker for that pool instead, or `prefect deployment delete` them first")
    serve(*served)
    return Outcome.DONE


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)

    def body() -> Outcome:
        if args != ["serve"]:
            raise BadInput("usage: python -m flows.deployments serve   (runs the scheduled deployments in this process)")
        return serve_all()

    return run_as_command(body)


if __name__ == "__main__":
    sys.exit(main())
