"""Crashed runs are noticed and failures alerted, through the automations that ``prefect-local``
installs on a server of the test's own: a deployment run whose worker and flow process are killed
(kill -9) turns Crashed, its ``backfill_runs`` row says 'crashed', and ``--resume`` continues it; a
finished run whose last heartbeat arrives after its end is left as it ended. With
``BACKFILL_ALERT_URL`` set, a failing run gives exactly one alert naming the deployment and saying
why, a completed run none, a crash one, and a run that no worker takes one when it has been Late.

One test, one server: the alert checks run while the crash window runs out (90 s, three of
Prefect's shortest heartbeats), instead of a second server and a second wait (issue 38)."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import pytest

from test import prefect_http
from test.fake_yahoo import FakeYahoo
from test.fix_db import table_rows
from test.fix_prefect import prefect_local
from test.fix_yahoo import ROOT, cli_env
from test.prefect_cli import FINISHED, POOL, create_run, prefect, read_run, wait_for
from test.test_etf_backfill import END, FIVE_SESSIONS, expected_rows

pytestmark = pytest.mark.slow
STAGGERED = "staggered-sector-backfill/weekly-saturday-0600-utc"


def kill_tree(pid: int) -> None:
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for p in procs:
        p.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=20)


def test_a_killed_run_turns_crashed_and_resumes_and_failed_crashed_and_late_runs_alert_once(
        own_prefect_server: dict[str, str], fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path, receiver: tuple[str, list[str]]) -> None:
    url, bodies = receiver
    env = {**cli_env(fake_yahoo, dsn), **own_prefect_server, "MARKET_BACKFILL_HOME": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_WORKER_PREFETCH_SECONDS": "1", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", "BACKFILL_CRASH_AFTER_S": "90",
           "BACKFILL_ALERT_URL": url, "BACKFILL_LATE_ALERT_S": "10"}
    api = env["PREFECT_API_URL"]
    installed = prefect_local("automations", env)  # the one-time command for a managed server: 90 s instead of 540
    assert installed.returncode == 0 and "Automation created" in installed.stderr, installed.stderr
    assert "alert when a deployment run fails" in installed.stderr, installed.stderr
    moved = prefect_local("automations", {**env, "BACKFILL_ALERT_URL": url + "?token=elsewhere"}, in_process=True)  # said
    assert moved.returncode == 0 and "Updated: market-backfill-alert (alerts now go to a webhook at 127.0.0.1" in moved.stderr
    assert "token" not in moved.stderr
    back = prefect_local("automations", env, in_process=True)
    assert back.returncode == 0 and "Updated: market-backfill-alert" in back.stderr
    same = prefect_local("automations", env, in_process=True)
    assert same.returncode == 0 and "are up to date: crash detection on, alerts on." in same.stderr, same.stderr
    plain = {k: v for k, v in env.items() if k not in ("BACKFILL_CRASH_AFTER_S", "PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    again = prefect_local("start", plain)  # only to print the URL: the window set stays (it used to go back to 540 s)
    assert again.returncode == 0 and "Automation created" not in again.stderr, again.stderr
    (crash,) = [a for a in prefect_http.post(f"{api}/automations/filter", json={}).json() if "heartbeats" in a["name"]]
    assert crash["trigger"]["within"] == 90.0, crash["trigger"]
    prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    prefect("deploy", "--all", "--no-prompt", env=env)
    run_id = create_run(api, STAGGERED, {"tickers": ["XLK", "XLV"], "days": 5, "end_date": END, "delay_minutes": 30.0,
                                         "cache_dir": str(tmp_path / "cache")})
    done = create_run(api, "daily-pipeline/retention-daily-0600-utc", {})
    failed = create_run(api, "etf-backfill/shards", {"tickers": ["SPY"], "delay": -3})
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL], cwd=ROOT, env=env,
                              stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # XLK stored, the run now waits 30 minutes before XLV: kill the worker and the flow run's process.
        wait_for(lambda: len(table_rows(dsn, "etf_daily_bars")) == 5, 120, "XLK's rows")
        wait_for(lambda: all(read_run(api, r)["state"]["type"] in FINISHED for r in (done, failed)), 120, "the other two runs")
        assert read_run(api, run_id)["state"]["type"] == "RUNNING"
    finally:
        kill_tree(worker.pid)
    killed_at = time.monotonic()
    assert read_run(api, done)["state"]["type"] == "COMPLETED"
    assert (read_run(api, failed)["state"]["type"], read_run(api, failed)["state"]["name"]) == ("FAILED", "BadInput")
    # Now no worker runs: a due run turns Late (Prefect: after 15 s) and stays Late for 10 s: alerted.
    late = create_run(api, "etf-backfill/shards", {"tickers": ["SPY"], "days": 5})
    # A run that finished, whose last heartbeat reaches the server after its end (events travel apart
    # from state changes): its window runs out with the killed run's, and it must stay Completed.
    finished = create_run(api, "etf-backfill/shards", {"tickers": ["SPY"]}, state={"type": "COMPLETED", "name": "Completed"})
    prefect_http.post(f"{api}/events", json=[{
        "id": str(uuid.uuid4()), "occurred": dt.datetime.now(dt.UTC).isoformat(), "event": "prefect.flow-run.heartbeat",
        "resource": {"prefect.resource.id": f"prefect.flow-run.{finished}", "prefect.resource.name": read_run(api, finished)["name"]},
    }], timeout=10).raise_for_status()
    wait_for(lambda: read_run(api, run_id)["state"]["type"] == "CRASHED", 200, "the run to be marked Crashed")
    state = read_run(api, run_id)["state"]
    assert "no heartbeat" in state["message"], state
    # The first crash after the server's start is alerted too (the operator once got none).
    wait_for(lambda: any("ended Crashed" in b for b in bodies), 60, "the crash's alert")
    wait_for(lambda: any("has been Late" in b for b in bodies), 60, "the Late run's alert")
    print(f"marked Crashed {time.monotonic() - killed_at:.0f} s after the kill")
    time.sleep(max(0.0, killed_at + 90 + 15 - time.monotonic()))  # the finished run's window too, and a trigger pass
    assert read_run(api, finished)["state"]["type"] == "COMPLETED"
    # One alert each: the failure (none again meanwhile), the crash, the Late run; none for the completed runs.
    failure, crashed, idle = (b for b in bodies if "BadInput" in b), (b for b in bodies if "ended Crashed" in b), \
        (b for b in bodies if "has been Late" in b)
    (failure_alert,), (crash_alert,), (late_alert,) = list(failure), list(crashed), list(idle)
    assert len(bodies) == 3, bodies
    assert "deployment etf-backfill/shards" in failure_alert and "parameter delay" in failure_alert, failure_alert
    assert read_run(api, failed)["name"] in failure_alert
    assert f"run {read_run(api, run_id)['name']} ended Crashed" in crash_alert and "no heartbeat" in crash_alert
    ui = api.removesuffix("/api")
    for alert, run in ((failure_alert, failed), (crash_alert, run_id), (late_alert, late)):  # each links to its run
        assert f"The run in Prefect's UI: {ui}/runs/flow-run/{run}" in alert, alert
    assert f"run {read_run(api, late)['name']} of deployment etf-backfill/shards has been Late for 10 s: no worker took it" in late_alert
    assert read_run(api, late)["state"]["name"] == "Late"

    resumed = subprocess.run([sys.executable, "-m", "flows.staggered_sector_backfill", "--resume", "--cache-dir", str(tmp_path / "cache")],
                             cwd=ROOT, env={k: v for k, v in env.items() if k != "PREFECT_API_URL"}, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "(crashed): 1 of 2 tickers already done; continuing with XLV" in resumed.stdout
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLK", "XLV"], FIVE_SESSIONS)
    with psycopg.connect(dsn) as conn:
        runs = conn.execute("SELECT flow, status FROM backfill_internal.backfill_runs").fetchall()
    # the staggered run's one record, crashed then resumed, and the retention run's
    assert sorted(runs) == [("daily-pipeline", "done"), ("staggered-sector-backfill", "done")], runs
