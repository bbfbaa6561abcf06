"""The deployment tests' common parts: ``prefect deploy --all`` on the test process's Prefect server,
and a live worker of the pool for a test, with the test's fake Yahoo and database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from test.fake_yahoo import FakeYahoo
from test.fix_yahoo import ROOT, cli_env
from test.prefect_cli import POOL, delete_waiting_runs, filter_runs, live_worker, prefect

END = "2025-07-08"
WORKER_RATE = "600/min,20000/h"  # the worker's environment: deployments leave `rate` null
STAGGERED = "staggered-sector-backfill/weekly-saturday-0600-utc"
FIVE_SESSIONS = [dt.date(2025, 7, 1), dt.date(2025, 7, 2), dt.date(2025, 7, 3), dt.date(2025, 7, 7), dt.date(2025, 7, 8)]


def runs_of(api: str, deployment_id: str, since: dt.datetime) -> list[dict[str, Any]]:
    """The deployment's runs created since ``since`` (this test's), oldest first."""
    return filter_runs(api, deployments={"id": {"any_": [deployment_id]}}, sort="START_TIME_ASC",
                       flow_runs={"start_time": {"after_": since.isoformat()}})


def continuations(api: str, deployment_id: str) -> list[dict[str, Any]]:
    """The deployment's continuations still waiting to run (finished ones are earlier tests')."""
    return filter_runs(api, deployments={"id": {"any_": [deployment_id]}},
                       flow_runs={"tags": {"all_": ["continuation"]}, "state": {"type": {"any_": ["SCHEDULED"]}}},
                       sort="EXPECTED_START_TIME_ASC")


@pytest.fixture(scope="session")  # once per test worker, however its tests interleave with other modules'
def deployments(prefect_api: dict[str, str]) -> dict[str, str]:
    """``prefect work-pool create`` + ``prefect deploy --all`` from prefect.yaml, once per test process
    (the server's scheduler is off: no schedule starts a run here); the Prefect part of a worker's
    environment."""
    env = {**cli_env(None, None), **prefect_api, "MARKET_BACKFILL_HOME": str(ROOT)}
    prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    out = prefect("deploy", "--all", "--no-prompt", env=env)
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    for d in spec["deployments"]:
        assert d["name"] in out, out
    return {**prefect_api, "MARKET_BACKFILL_HOME": str(ROOT)}


@pytest.fixture
def deployed(deployments: dict[str, str], fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A worker of the pool running through the test, as an operator leaves one (Prefect's default
    prefetch: it takes runs up to 10 s before their time), with this test's fake Yahoo and database;
    the worker's environment. No run of an earlier test is left waiting for it."""
    env = {**cli_env(fake_yahoo, dsn), **deployments, "PREFECT_WORKER_QUERY_SECONDS": "1", "BACKFILL_MAX_CONSECUTIVE_STOPS": "3",
           "YAHOO_RATE": WORKER_RATE}
    delete_waiting_runs(env["PREFECT_API_URL"])
    with live_worker(env, tmp_path / "worker.log"):
        yield env
    delete_waiting_runs(env["PREFECT_API_URL"])  # this test's continuations are not the next one's


def worker_log(tmp_path: Path) -> str:
    return (tmp_path / "worker.log").read_text(errors="replace")[-4000:]
