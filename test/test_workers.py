"""Several machines, simulated on one: a Prefect server, one process work pool, two workers, one
PostgreSQL. Sharded runs are picked up by both workers, every ticker is fetched and stored once,
and the requests of both stay within the shared rate budget."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from test import prefect_http
from test.fake_yahoo import FakeYahoo
from test.fix_yahoo import ROOT, cli_env
from test.rate_helpers import most_in_window

SHARDS = [["SPY", "XLK", "XLV"], ["XLF", "XLE", "XLY"], ["XLP", "XLI", "XLB"], ["XLU", "XLRE", "XLC"]]
DEPLOY = """
from prefect import flow
flow.from_source(source={root!r}, entrypoint="flows/deployments.py:etf_backfill").to_deployment(
    name="two-workers", work_pool_name={pool!r}).apply()
"""


def prefect(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def flow_runs(api: str, pool: str) -> list[dict[str, Any]]:
    """The flow runs of deployments on ``pool`` (the server is shared with other tests)."""
    answer = prefect_http.post(f"{api}/flow_runs/filter", json={"limit": 50, "work_pools": {"name": {"any_": [pool]}}}, timeout=10)
    answer.raise_for_status()
    return [r for r in answer.json() if r.get("deployment_id")]


@pytest.mark.slow
def test_two_workers_of_one_pool_share_the_runs_and_the_rate_budget(fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path,
                                                                   prefect_api: dict[str, str]) -> None:
    env = {**cli_env(fake_yahoo, dsn), **prefect_api, "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_WORKER_PREFETCH_SECONDS": "1", "BACKFILL_ORCHESTRATE": "prefect"}
    api = env["PREFECT_API_URL"]
    pool = f"test-pool-{tmp_path.name[-8:]}"
    procs: list[subprocess.Popen[Any]] = []
    logs = [tmp_path / f"w{i}.log" for i in (1, 2)]
    try:
        prefect("work-pool", "create", pool, "--type", "process", env=env)
        deployed = subprocess.run([sys.executable, "-c", DEPLOY.format(root=str(ROOT), pool=pool)], cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=120)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        for shard in SHARDS:  # the whole line as "command", as runs made by deployments before args and prog: still taken
            params = {"tickers": shard, "days": 5, "end_date": "2025-07-08", "delay": 0.0, "rate": "120/min",
                      "cache_dir": str(tmp_path / "cache"), "command": f"etf-backfill --tickers {','.join(shard)}"}
            prefect("deployment", "run", "etf-backfill/two-workers", "--params", json.dumps(params), env=env)
        for i, log in enumerate(logs, start=1):
            procs.append(subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--limit", "1",
                                           "--name", f"w{i}"], cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                          text=True))
        deadline = time.monotonic() + 240
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = flow_runs(api, pool)
            if len(runs) == 4 and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs):
                break
            time.sleep(1)
        assert [r["state_type"] for r in runs] == ["COMPLETED"] * 4, [(r["name"], r["state_type"]) for r in runs]
        answer = prefect_http.post(f"{api}/artifacts/filter", json={"limit": 100, "flow_runs": {"id": {"any_": [r["id"] for r in runs]}}},
                            timeout=10)
        answer.raise_for_status()
        artifacts = answer.json()
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    # Both workers ran runs, and each run was run by exactly one of them (a worker may also log a
    # run it tried to claim and lost to the other: only "Beginning flow run" means it ran it).
    names = {r["name"] for r in runs}
    began = [{n for n in names if f"Beginning flow run '{n}'" in log.read_text()} for log in logs]
    assert all(began) and not (began[0] & began[1]) and began[0] | began[1] == names, [log.read_text()[-3000:] for log in logs]
    # Each run left its summary (markdown: the closing line) and a finished progress artifact.
    for run in runs:
        mine = {a["key"]: a for a in artifacts if a["flow_run_id"] == run["id"]}
        assert mine["etf-backfill-summary"]["type"] == "markdown" and "Prices: 15 new" in mine["etf-backfill-summary"]["data"]
        assert mine["etf-backfill-progress"]["type"] == "progress" and float(mine["etf-backfill-progress"]["data"]) == 100.0
    # No duplicated work: every ticker fetched once and stored once, each shard one finished run.
    charts = fake_yahoo.chart_requests()
    assert sorted(c.symbol or "" for c in charts) == sorted(t for shard in SHARDS for t in shard)
    with psycopg.connect(dsn) as conn:
        per_ticker = dict(conn.execute("SELECT ticker, count(*) FROM etf_daily_bars GROUP BY ticker").fetchall())
        statuses = [r[0] for r in conn.execute("SELECT status FROM backfill_internal.backfill_runs")]
    assert per_ticker == {t: 5 for shard in SHARDS for t in shard}
    assert statuses == ["done"] * 4
    # The budget held across the two workers' processes: 2 requests per second together.
    times = [entry.at for entry in fake_yahoo.log]
    assert most_in_window(times, 1.0) <= 3
