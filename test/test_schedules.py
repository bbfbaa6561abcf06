"""On a live ``prefect-local`` server whose scheduler's loop is shortened, the two ways to deploy:

- the README's one-machine path: ``python -m flows.deployments serve`` registers the deployments
  and runs them in its own process; on a server that holds them for a work pool it refuses to
  overwrite them;
- schedules fire by themselves: ``prefect.yaml`` deployed, the scheduler creates every deployment's
  runs at the times its cron says, and a worker runs one that the scheduler created to completion.

One test on one server, serve first (issue 38: a server start and its deploy less)."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cronsim import CronSim

from test import prefect_http
from test.fake_yahoo import FakeYahoo
from test.fix_yahoo import ROOT, cli_env
from test.prefect_cli import FINISHED, POOL, filter_runs, prefect, read_run, run_deployment, work_once

pytestmark = pytest.mark.slow
RETENTION = "daily-pipeline/retention-daily-0600-utc"
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))


def next_fire_times(cron: str, after: dt.datetime, n: int) -> list[dt.datetime]:
    """The next ``n`` times ``cron`` fires after ``after`` (UTC), computed by cronsim, not by Prefect."""
    found = CronSim(cron, after.replace(tzinfo=None))
    return [next(found).replace(tzinfo=dt.UTC) for _ in range(n)]


def scheduled_runs(api: str, deployment_id: str) -> list[dict[str, Any]]:
    return filter_runs(api, deployments={"id": {"any_": [deployment_id]}}, flow_runs={"tags": {"all_": ["auto-scheduled"]}},
                       sort="EXPECTED_START_TIME_ASC", limit=200)


def deployment_id(api: str, flow_name: str, name: str) -> str:
    answer = prefect_http.get(f"{api}/deployments/name/{flow_name}/{name}", timeout=10)
    answer.raise_for_status()
    return str(answer.json()["id"])


def read_deployment(api: str, name: str) -> dict[str, object] | None:
    answer = prefect_http.get(f"{api}/deployments/name/{name}", timeout=10)
    return None if answer.status_code == 404 else dict(answer.json())


def serve_runs_one(env: dict[str, str], log: Path) -> None:
    """``python -m flows.deployments serve`` registers the deployments and runs one started by hand."""
    api = env["PREFECT_API_URL"]
    served = subprocess.Popen([sys.executable, "-m", "flows.deployments", "serve"], cwd=ROOT, env=env, stdout=log.open("w"),
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while read_deployment(api, RETENTION) is None and time.monotonic() < deadline:
            time.sleep(0.5)
        deployment = read_deployment(api, RETENTION)
        assert deployment is not None, log.read_text()[-3000:]
        assert deployment["entrypoint"] == "flows/deployments.py:daily_pipeline"
        run_id = run_deployment(RETENTION, {}, env)
        while read_run(api, run_id)["state"]["type"] not in FINISHED and time.monotonic() < deadline + 60:
            time.sleep(0.5)
        state = read_run(api, run_id)["state"]
        assert state["type"] == "COMPLETED", (state, log.read_text()[-3000:])
    finally:
        served.send_signal(signal.SIGINT)
        served.wait(timeout=60)


def test_serve_runs_a_deployment_then_scheduled_runs_of_every_deployment_fire_and_serve_keeps_off_the_pools(
        own_prefect_server: dict[str, str], fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    env = {**cli_env(fake_yahoo, dsn), **own_prefect_server, "MARKET_BACKFILL_HOME": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    api = env["PREFECT_API_URL"]
    as_typed = {k: v for k, v in env.items() if k != "MARKET_BACKFILL_HOME"}  # serve, as the README types it
    serve_runs_one(as_typed, tmp_path / "serve.log")

    prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    deployed_at = dt.datetime.now(dt.UTC)
    prefect("deploy", "--all", "--no-prompt", env=env)
    ids = {d["name"]: deployment_id(api, d["entrypoint"].split(":")[1].replace("_", "-"), d["name"]) for d in SPEC["deployments"]}

    # deploy --all put them on a work pool: serve now refuses (exit 2), and leaves them as they are.
    before = read_deployment(api, RETENTION)
    refused = subprocess.run([sys.executable, "-m", "flows.deployments", "serve"], cwd=ROOT, env=as_typed, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert RETENTION in refused.stderr and f"work pool {POOL}" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    after = read_deployment(api, RETENTION)
    assert after is not None and before is not None
    assert (after["entrypoint"], after["work_pool_name"], after["pull_steps"]) == (before["entrypoint"], POOL, before["pull_steps"])

    # Every deployment gets its next runs from the scheduler, at the times its cron gives (counted
    # from the deploy: what the scheduler made for the served deployments before it is not asked).
    deadline = time.monotonic() + 90
    runs: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        runs = {name: [r for r in scheduled_runs(api, i) if dt.datetime.fromisoformat(r["expected_start_time"]) > deployed_at]
                for name, i in ids.items()}
        if all(len(runs[d["name"]]) >= 3 for d in SPEC["deployments"] if d["schedules"]):
            break
        time.sleep(1)
    for spec in SPEC["deployments"]:
        mine = runs[spec["name"]]
        if not spec["schedules"]:  # run by hand only (the shards deployment): the scheduler leaves it alone
            assert mine == [], spec["name"]
            continue
        (schedule,) = spec["schedules"]
        assert len(mine) >= 3, (spec["name"], len(mine), (Path(env["BACKFILL_PREFECT_HOME"]) / "server.log").read_text()[-3000:])
        starts = [dt.datetime.fromisoformat(r["expected_start_time"]) for r in mine[:3]]
        expected = next_fire_times(schedule["cron"], deployed_at, 4)  # a fire time may pass between deploying and scheduling
        assert starts in (expected[:3], expected[1:]), (spec["name"], starts, expected)
        assert all(r["state"]["type"] == "SCHEDULED" and r["parameters"] == spec["parameters"] for r in mine), spec["name"]

    # A schedule that comes due now: a worker runs what the scheduler created for it, to completion.
    prefect("deployment", "schedule", "create", RETENTION, "--interval", "5", env=env)
    deadline = time.monotonic() + 60
    due: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not due:
        now = dt.datetime.now(dt.UTC)
        due = [r for r in scheduled_runs(api, ids["retention-daily-0600-utc"])
               if dt.datetime.fromisoformat(r["expected_start_time"]) <= now + dt.timedelta(seconds=5)]
        time.sleep(1)
    assert due, "the scheduler created no run for the 5-second schedule within a minute"
    # Runs come due every 5 s, about as fast as a worker takes them: each does the work, or ends
    # Superseded when a later one has waited past Prefect's Late threshold (a pile-up).
    deadline = time.monotonic() + 180
    finished: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not any(r["state"]["type"] == "COMPLETED" for r in finished):
        work_once(env, tmp_path / "worker.log")
        finished = [r for r in scheduled_runs(api, ids["retention-daily-0600-utc"]) if r["state"]["type"] in FINISHED]
    assert any(r["state"]["type"] == "COMPLETED" for r in finished), (finished, (tmp_path / "worker.log").read_text()[-3000:])
    assert all(r["state"]["type"] == "COMPLETED" or r["state"]["name"] == "Superseded" for r in finished), finished

    # The scheduler ran all along without an error.
    log = (Path(env["BACKFILL_PREFECT_HOME"]) / "server.log").read_text(errors="replace")
    assert "tzinfo must be" not in log and "Traceback" not in log, log[-3000:]
