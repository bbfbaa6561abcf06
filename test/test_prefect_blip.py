"""A Prefect server blip never fails a data run: the server stops mid-run and comes back on the same
port; the run goes on fetching and storing meanwhile and ends Completed once the API answers again."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test import prefect_http
from test.fake_yahoo import FakeYahoo
from test.fix_db import table_rows
from test.fix_prefect import prefect_local
from test.fix_yahoo import ROOT, cli_env
from test.prefect_cli import filter_runs, wait_for
from test.test_etf_backfill import END, FIVE_SESSIONS, expected_rows

pytestmark = pytest.mark.slow
TICKERS = ["SPY", "XLK", "XLV", "XLF", "XLE", "XLY", "XLP", "XLI", "XLB", "XLU", "XLRE", "XLC"]


def test_a_run_outlives_a_prefect_server_restart_and_ends_completed(own_prefect_server: dict[str, str], fake_yahoo: FakeYahoo,
                                                                    dsn: str, tmp_path: Path) -> None:
    env = {**cli_env(fake_yahoo, dsn), **own_prefect_server}
    api = env["PREFECT_API_URL"]
    out = tmp_path / "run.log"
    run = subprocess.Popen([sys.executable, "-m", "flows.etf_backfill", "--orchestrate", "prefect", "--no-batch", "--days", "5",
                            "--end", END, "--delay", "0.8", "--cache-dir", str(tmp_path / "cache")],
                           cwd=ROOT, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: len(fake_yahoo.chart_requests()) >= 2, 120, "the first fetches")
        # The next answers wait until the server is down: the run cannot finish its fetches while the
        # stop is under way (on a busy machine the stop took longer than the whole run once).
        fake_yahoo.gate = threading.Event()
        assert prefect_local("stop", own_prefect_server).returncode == 0
        down_at = len(fake_yahoo.chart_requests())
        fake_yahoo.gate.set()
        # While the API is down the run goes on fetching (and storing: checked at the end).
        wait_for(lambda: len(fake_yahoo.chart_requests()) >= down_at + 3, 60, "fetches while Prefect's server is down")
        time.sleep(3)
        again = prefect_local("start", own_prefect_server)
        assert again.returncode == 0, again.stderr
        assert f"export PREFECT_API_URL={api}" in again.stdout  # the same port: every client keeps its URL
        code = run.wait(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    log = out.read_text()
    assert code == 0, log[-4000:]
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(TICKERS, FIVE_SESSIONS)
    (flow_run,) = [r for r in filter_runs(api, flows={"name": {"any_": ["etf-backfill"]}}) if r["state"]]
    assert flow_run["state"]["type"] == "COMPLETED", (flow_run["state"], log[-3000:])
    summary = prefect_http.post(f"{api}/artifacts/filter", json={"artifacts": {"key": {"any_": ["etf-backfill-summary"]}}}).json()
    assert [a["flow_run_id"] for a in summary] == [flow_run["id"]]
