"""One big run over the whole work pool: a deployment run with ``shards`` N > 1 values nothing
itself; it submits N runs of its own deployment (``shard`` 1/N .. N/N, each a stable share of the
tickers) to the work pool, so every worker takes a share, and waits for them.

- Each shard is a run like any other: a rate limit stops it with a continuation of its own (its
  tags and parameters carry the shard), which the parent waits for too.
- A restarted parent (the same flow run, run again) submits nothing twice: each shard run is
  created with the idempotency key ``<parent run id>/shard-K-of-N``, and the server answers a key
  it has seen with the run it made then.
- The parent ends with one state and one summary over every shard: Completed when every shard's
  last run completed, else Failed, naming the shards and their messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flows.orchestration.glue import CONTINUATION_TAG, STOP_TAG, own_job_variables
from tasks.core.errors import BadInput, Outcome

FAN_OUT_TAG = "fan-out-"  # + the parent's flow run id, on every run of its shards (continuations too)
SHARD_TAG = "shard-"  # + "K-of-N"
POLL_S = 3.0
_FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def shard_parameters(values: dict[str, Any], number: int, count: int, done: dict[str, Any] | None = None) -> dict[str, Any]:
    """A shard run's parameters: the parent's, for share ``number`` of ``count``, with ``done``: what
    the parent did itself and the shards must not do again (event valuation's import)."""
    return {**values, "shards": 1, "shard": f"{number}/{count}", **(done or {})}


def submit_shards(deployment_id: str, parent_id: str, parent_tags: list[str], values: dict[str, Any], count: int,
                  done: dict[str, Any] | None = None) -> list[Any]:
    """Create (or, for a parent run again, find) one run of the deployment per shard, as subflows of the parent."""
    from prefect.deployments import run_deployment

    tags = [t for t in parent_tags if t != CONTINUATION_TAG and not t.startswith((STOP_TAG, FAN_OUT_TAG, SHARD_TAG))]
    job_variables = own_job_variables()
    return [run_deployment(name=deployment_id, parameters=shard_parameters(values, k, count, done), timeout=0, as_subflow=True,
                           idempotency_key=f"{parent_id}/shard-{k}-of-{count}", job_variables=job_variables,
                           tags=[*tags, f"{FAN_OUT_TAG}{parent_id}", f"{SHARD_TAG}{k}-of-{count}"])
            for k in range(1, count + 1)]


def shard_runs(parent_id: str) -> dict[str, list[Any]]:
    """Every run of the parent's shards (first runs and continuations), by shard tag, oldest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"{FAN_OUT_TAG}{parent_id}"])),
                                     sort=FlowRunSort.START_TIME_ASC, limit=200)
    out: dict[str, list[Any]] = {}
    for run in sorted(runs, key=lambda r: str(r.created or r.expected_start_time)):
        shard = next((t.removeprefix(SHARD_TAG) for t in run.tags if t.startswith(SHARD_TAG)), "?")
        out.setdefault(shard, []).append(run)
    return out


def _state(run: Any) -> str:
    return str(run.state.type.value) if run.state is not None else "SCHEDULED"


def wait_for_shards(parent_id: str, count: int, log: Callable[[str], None], poll: float = POLL_S) -> dict[str, Any]:
    """Until every shard's runs are final (a shard stopped by a rate limit has its continuation
    waiting: not final); the last run of each shard. Says each shard's run as it ends."""
    said: set[str] = set()
    while True:
        runs = shard_runs(parent_id)
        for shard, chain in sorted(runs.items()):
            for run in chain:
                if _state(run) in _FINAL and str(run.id) not in said:
                    said.add(str(run.id))
                    log(f"shard {shard.replace('-of-', '/')}: {run.name} {run.state.name}")
        if len(runs) >= count and all(_state(r) in _FINAL for chain in runs.values() for r in chain):
            return {shard: chain[-1] for shard, chain in runs.items()}
        time.sleep(poll)


def fan_out(values: dict[str, Any], log: Callable[[str], None], done: dict[str, Any] | None = None) -> Outcome:
    """In a deployment run with ``shards`` > 1: submit the shards (their parameters ``done``: see
    ``shard_parameters``), wait, sum up (module doc).

    Raises:
        BadInput: not a deployment run (nothing to submit shards of).
    """
    from prefect.runtime import deployment, flow_run

    count = int(values["shards"])
    if not deployment.id:
        raise BadInput(f"shards={count} fans a run out over a work pool: start it as a deployment run "
                       "(prefect deployment run ... -p shards=N), or give each machine its own --shard K/N")
    runs = submit_shards(deployment.id, flow_run.id, list(flow_run.tags), values, count, done)
    log(f"Submitted {count} shard runs of {flow_run.flow_name}/{deployment.name} to the work pool: "
        + ", ".join(str(r.name) for r in runs))
    last = wait_for_shards(flow_run.id, count, log)
    bad = {shard: run for shard, run in sorted(last.items()) if _state(run) != "COMPLETED"}
    for shard, run in sorted(last.items()):
        message = ((run.state.message or "").strip().splitlines() or [""])[0]
        log(f"  shard {shard.replace('-of-', '/')}: {run.state.name} ({run.name}){': ' + message if message else ''}")
    if bad:
        log(f"{len(bad)} of {count} shards did not complete: " + ", ".join(s.replace("-of-", "/") for s in bad))
        return Outcome.SOME_FAILED
    log(f"All {count} shards completed")
    return Outcome.DONE
