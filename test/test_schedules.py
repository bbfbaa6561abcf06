"""Schedules fire by themselves: ``prefect.yaml`` deployed to a live ``prefect-local`` server whose
scheduler (its loop shortened) creates every deployment's runs at the times its cron says, and a
worker runs one that the scheduler created to completion. No run here is started by hand."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cronsim import CronSim

from test.fake_yahoo import FakeYahoo
from test.fix_yahoo import ROOT, cli_env
from test.prefect_cli import FINISHED, POOL, filter_runs, prefect, work_once

pytestmark = pytest.mark.slow
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))


def next_fire_times(cron: str, after: dt.datetime, n: int) -> list[dt.datetime]:
    """The next ``n`` times ``cron`` fires after ``after`` (UTC), computed by cronsim, not by Prefect."""
    found = CronSim(cron, after.replace(tzinfo=None))
    return [next(found).replace(tzinfo=dt.UTC) for _ in range(n)]


def scheduled_runs(api: str, deployment_id: str) -> list[dict[str, Any]]:
    return filter_runs(api, deployments={"id": {"any_": [deployment_id]}}, flow_runs={"tags": {"all_": ["auto-scheduled"]}},
                       sort="EXPECTED_START_TIME_ASC", limit=200)


def deployment_id(api: str, flow_name: str, name: str) -> str:
    from test import prefect_http

    answer = prefect_http.get(f"{api}/deployments/name/{flow_name}/{name}", timeout=10)
    answer.raise_for_status()
    return str(answer.json()["id"])


def test_the_server_creates_every_deployments_scheduled_runs_and_a_worker_runs_one(
        own_prefect_server: dict[str, str], fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    env = {**cli_env(fake_yahoo, dsn), **own_prefect_server, "MARKET_BACKFILL_HOME": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    api = env["PREFECT_API_URL"]
    prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    deployed_at = dt.datetime.now(dt.UTC)
    prefect("deploy", "--all", "--no-prompt", env=env)
    ids = {d["name"]: deployment_id(api, d["entrypoint"].split(":")[1].replace("_", "-"), d["name"]) for d in SPEC["deployments"]}

    # Every deployment gets its next runs from the scheduler, at the times its cron gives.
    deadline = time.monotonic() + 90
    runs: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        runs = {name: scheduled_runs(api, i) for name, i in ids.items()}
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
    retention = "daily-pipeline/retention-daily-0600-utc"
    prefect("deployment", "schedule", "create", retention, "--interval", "5", env=env)
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
