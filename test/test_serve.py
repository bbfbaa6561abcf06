"""The README's one-machine path: ``python -m flows.deployments serve`` registers the deployments
and runs them in its own process; on a server that holds them for a work pool it refuses to
overwrite them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test import prefect_http
from test.fake_yahoo import FakeYahoo
from test.fix_yahoo import ROOT, cli_env
from test.prefect_cli import FINISHED, POOL, prefect, read_run, run_deployment

pytestmark = pytest.mark.slow
RETENTION = "daily-pipeline/retention-daily-0600-utc"


def read_deployment(api: str, name: str) -> dict[str, object] | None:
    answer = prefect_http.get(f"{api}/deployments/name/{name}", timeout=10)
    return None if answer.status_code == 404 else dict(answer.json())


def test_serve_runs_a_deployment_and_refuses_to_overwrite_work_pool_deployments(
        own_prefect_server: dict[str, str], fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    env = {**cli_env(fake_yahoo, dsn), **own_prefect_server}
    api = env["PREFECT_API_URL"]
    log = tmp_path / "serve.log"
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

    # deploy --all puts them on a work pool: serve now refuses (exit 2), and leaves them as they are.
    prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env={**env, "MARKET_BACKFILL_HOME": str(ROOT)})
    prefect("deploy", "--all", "--no-prompt", env={**env, "MARKET_BACKFILL_HOME": str(ROOT)})
    before = read_deployment(api, RETENTION)
    refused = subprocess.run([sys.executable, "-m", "flows.deployments", "serve"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert RETENTION in refused.stderr and f"work pool {POOL}" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    after = read_deployment(api, RETENTION)
    assert after is not None and before is not None
    assert (after["entrypoint"], after["work_pool_name"], after["pull_steps"]) == (before["entrypoint"], POOL, before["pull_steps"])
