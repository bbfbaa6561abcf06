"""Deployment runs that stop (a rate limit, a busy database) end in a state that says so and schedule
their own continuation, which waits for its time and finishes the work once the source recovers;
one that keeps being stopped gives up loudly; ``prefect-local run-now`` starts a continuation at
once; runs of a schedule piled up while no worker ran collapse into the latest."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from flows.orchestration.glue import BUSY_RETRY_S, STOP_TAG
from test import prefect_http
from test.fake_yahoo import FakeYahoo
from test.fix_db import table_rows
from test.fix_deploy import END, FIVE_SESSIONS, STAGGERED, continuations, runs_of, worker_log
from test.fix_yahoo import ROOT, cli_env
from test.jsonl_tree import make_tree
from test.prefect_cli import create_run, delete_waiting_runs, live_worker, prefect, read_run, wait_finished, wait_for
from test.test_etf_backfill import expected_rows

pytestmark = pytest.mark.slow


def test_a_rate_limited_deployment_run_schedules_one_continuation_per_shard(deployed: dict[str, str], fake_yahoo: FakeYahoo,
                                                                             tmp_path: Path) -> None:
    api = deployed["PREFECT_API_URL"]
    # An hour's cool-down: nothing this test schedules comes due while it looks, however slow the machine.
    params = {"tickers": ["XLK"], "days": 5, "end_date": END, "delay_minutes": 0.001, "rate_limit_sleep": 3600.0,
              "cache_dir": str(tmp_path / "cache")}
    fake_yahoo.blocked_until = time.time() + 7200  # every request gets 429 until further notice

    first = create_run(api, STAGGERED, params)
    state = wait_finished(api, first)
    assert (state["type"], state["name"]) == ("CANCELLED", "RateLimited"), (state, worker_log(tmp_path))
    assert "resume after 20" in state["message"] and "continuation" in state["message"]
    deployment_id = read_run(api, first)["deployment_id"]
    (pending,) = continuations(api, deployment_id)
    assert pending["parameters"] == read_run(api, first)["parameters"]
    assert f"{STOP_TAG}1" in pending["tags"]
    resume_at = dt.datetime.fromisoformat(state["message"].split("resume after ")[1][:19]).replace(tzinfo=dt.UTC)
    assert abs(dt.datetime.fromisoformat(pending["expected_start_time"]) - resume_at) <= dt.timedelta(seconds=1)
    # the cool-down's end, rounded up to the whole second (never a moment before it ends)
    assert dt.timedelta(minutes=59) < resume_at - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1, seconds=1)
    asked = len(fake_yahoo.log)

    # A second stop of the same shard while its continuation waits adds none: it finds the shared
    # budget cooling down and stops before asking Yahoo anything.
    again = create_run(api, STAGGERED, params)
    state = wait_finished(api, again)
    # Our budget said no (no request sent): not a rate-limit stop, said as what it is.
    assert state["name"] == "CoolingDown" and "already scheduled" in state["message"], state
    assert "Waiting for the budget's cool-down until 20" in state["message"] and "not a rate-limit stop" in state["message"]
    assert [r["id"] for r in continuations(api, deployment_id)] == [pending["id"]]

    # Another shard (other tickers) stopped meanwhile gets a continuation of its own.
    shard = create_run(api, STAGGERED, {**params, "tickers": ["XLV"]})
    stopped = wait_finished(api, shard)
    assert stopped["name"] == "CoolingDown", stopped
    (other,) = [r for r in continuations(api, deployment_id) if r["parameters"]["tickers"] == ["XLV"]]
    # the continuation's id, as run-now takes it
    assert f"to start it at once, uv run prefect-local run-now {other['id']}" in stopped["message"]
    assert not any(t.startswith(STOP_TAG) for t in other["tags"])  # no stop counted for a run the source never saw
    waiting = continuations(api, deployment_id)
    assert sorted(tuple(r["parameters"]["tickers"]) for r in waiting) == [("XLK",), ("XLV",)]
    assert len(fake_yahoo.log) == asked
    assert all(r["state"]["type"] == "SCHEDULED" for r in waiting)  # the live worker leaves them: not due

    # The operator runs the continuation at once during the cool-down, as its state message says:
    # our budget refuses it before any request, and that spends none of the rescheduling allowance.
    moved = prefect_local_cli("run-now", pending["id"], env=deployed)
    assert moved.returncode == 0, moved.stderr
    early = wait_finished(api, pending["id"])
    assert early["name"] == "CoolingDown" and "Waiting for the budget's cool-down until 20" in early["message"], early
    assert len(fake_yahoo.log) == asked  # Yahoo was not asked
    (next_one,) = [r for r in continuations(api, deployment_id) if r["parameters"]["tickers"] == ["XLK"]]
    assert f"{STOP_TAG}1" in next_one["tags"] and f"{STOP_TAG}2" not in next_one["tags"]  # still one stop in a row


def test_a_continuation_taken_early_by_a_worker_waits_for_its_time_and_finishes_the_work(deployed: dict[str, str],
                                                                                         fake_yahoo: FakeYahoo, dsn: str,
                                                                                         tmp_path: Path) -> None:
    """The worker takes runs its prefetch (10 s) ahead of their time: the continuation must not ask
    the budget before the cool-down it was scheduled after has ended."""
    api = deployed["PREFECT_API_URL"]
    params = {"tickers": ["XLK"], "days": 5, "end_date": END, "delay_minutes": 0.001, "rate_limit_sleep": 15.0,
              "cache_dir": str(tmp_path / "cache")}
    fake_yahoo.blocked_until = time.time() + 3600
    # Started with a job variable for the worker (an env of its own): its continuation carries it.
    overrides = {"env": {"BACKFILL_MAX_CONSECUTIVE_STOPS": "4"}}
    first = create_run(api, STAGGERED, params, job_variables=overrides)
    state = wait_finished(api, first)
    assert (state["type"], state["name"]) == ("CANCELLED", "RateLimited"), state
    (pending,) = continuations(api, read_run(api, first)["deployment_id"])
    assert pending["job_variables"] == overrides, pending["job_variables"]
    due = dt.datetime.fromisoformat(pending["expected_start_time"]).timestamp()
    fake_yahoo.blocked_until = None  # the source recovers

    ended = wait_finished(api, pending["id"])
    assert ended["type"] == "COMPLETED", (ended, worker_log(tmp_path))
    started = dt.datetime.fromisoformat(read_run(api, pending["id"])["start_time"]).timestamp()
    after = [entry.at for entry in fake_yahoo.log if entry.status == 200 and "/chart/" in entry.path]
    assert after and min(after) >= due, (min(after) - due, started - due)
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLK"], FIVE_SESSIONS)
    assert not continuations(api, pending["deployment_id"])


def test_a_deployment_run_that_finds_the_database_busy_is_continued_without_counting_a_stop(
        deployed: dict[str, str], fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    api = deployed["PREFECT_API_URL"]
    # Another staggered run (a terminal's) holds the database: it waits a minute between its fetches.
    holder = subprocess.Popen([sys.executable, "-m", "flows.staggered_sector_backfill", "--tickers", "XLK,XLV", "--days", "5",
                               "--end", END, "--delay", "1m", "--cache-dir", str(tmp_path / "cli-cache")],
                              cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any("/chart/XLK" in entry.path for entry in fake_yahoo.log), 60, "the terminal's run to fetch XLK")
        before = dt.datetime.now(dt.UTC)
        run_id = create_run(api, STAGGERED, {"tickers": ["XLV"], "days": 5, "end_date": END, "delay_minutes": 0.001,
                                             "cache_dir": str(tmp_path / "cache")})
        ended = wait_finished(api, run_id)
    finally:
        holder.send_signal(signal.SIGINT)
        holder.communicate(timeout=60)
    assert (ended["type"], ended["name"]) == ("CANCELLED", "Busy"), (ended, worker_log(tmp_path))
    assert "another run holds the database" in ended["message"]
    (pending,) = continuations(api, read_run(api, run_id)["deployment_id"])
    assert not any(t.startswith(STOP_TAG) for t in pending["tags"])  # not a rate-limit stop: the count stays at none
    assert ended["message"].startswith("Stopped: another run holds the database; resume after 20")
    waits = dt.datetime.fromisoformat(pending["expected_start_time"]) - before
    assert dt.timedelta(seconds=BUSY_RETRY_S) < waits <= dt.timedelta(seconds=BUSY_RETRY_S + 60)


def test_a_deployment_stopped_again_and_again_gives_up_loudly(deployed: dict[str, str], fake_yahoo: FakeYahoo,
                                                             tmp_path: Path) -> None:
    api = deployed["PREFECT_API_URL"]
    params = {"tickers": ["XLV"], "days": 5, "end_date": END, "delay_minutes": 0.001, "rate_limit_sleep": 1.0,
              "cache_dir": str(tmp_path / "cache")}
    fake_yahoo.blocked_until = time.time() + 3600
    since = dt.datetime.now(dt.UTC)
    first = create_run(api, STAGGERED, params)
    deployment_id = read_run(api, first)["deployment_id"]

    def gave_up() -> bool:
        return any(r["state"]["type"] == "FAILED" for r in runs_of(api, deployment_id, since))

    # The first run, then continuations 1 and 2 (BACKFILL_MAX_CONSECUTIVE_STOPS=3), each taken by the worker at its time.
    wait_for(gave_up, 180, f"the third stop in a row\n{worker_log(tmp_path)}")
    chain = runs_of(api, deployment_id, since)
    assert [(r["state"]["type"], r["state"]["name"]) for r in chain] == [("CANCELLED", "RateLimited")] * 2 + [("FAILED", "RateLimited")]
    assert "3 times in a row" in chain[-1]["state"]["message"]
    assert all(r["parameters"] == chain[0]["parameters"] for r in chain)
    assert not continuations(api, deployment_id)


def test_a_continuation_run_early_with_prefect_local_run_now_runs_once(deployed: dict[str, str], dsn: str, tmp_path: Path) -> None:
    env, api = deployed, deployed["PREFECT_API_URL"]
    params = {"tickers": ["XLK"], "days": 5, "end_date": END, "delay_minutes": 0.001, "cache_dir": str(tmp_path / "cache")}
    flags = [x for k, v in params.items() for x in ("-p", f"{k}={json.dumps(v)}")]
    out = prefect("deployment", "run", STAGGERED, "--start-in", "1 hour", *flags, env=env)
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)  # type: ignore[union-attr]
    assert read_run(api, run_id)["state"]["type"] == "SCHEDULED"  # an hour ahead: the live worker leaves it
    moved = prefect_local_cli("run-now", run_id, env=env)
    assert moved.returncode == 0, moved.stderr
    assert wait_finished(api, run_id)["type"] == "COMPLETED", worker_log(tmp_path)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT status FROM backfill_internal.backfill_runs").fetchall() == [("done",)]
    assert read_run(api, run_id)["run_count"] == 1
    again = prefect_local_cli("run-now", run_id, env=env)
    assert again.returncode == 2 and "not scheduled" in again.stderr


def prefect_local_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.prefect_local", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_runs_of_a_schedule_piled_up_while_no_worker_ran_collapse_into_the_latest(deployments: dict[str, str], fake_yahoo: FakeYahoo,
                                                                                 dsn: str, tmp_path: Path) -> None:
    """Three runs of the every-10-minutes schedule came due while every worker was down (as the
    scheduler makes them: tagged auto-scheduled). When a worker returns, the two earlier ones end
    Superseded, naming the latest, which does the work once; before, each ran in turn."""
    env = {**cli_env(fake_yahoo, dsn), **deployments, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    api = env["PREFECT_API_URL"]
    delete_waiting_runs(api)
    tree = make_tree(tmp_path / "observer", files=1, minutes_per_file=1)
    params = {"swing": str(tree.root / "swing"), "scalp": str(tree.root / "scalp"), "gaps": str(tree.root / "system" / "gap_*.jsonl")}
    deployment = prefect_http.get(f"{api}/deployments/name/jsonl-ingest/every-10-minutes").json()
    assert deployment["global_concurrency_limit"]["limit"] == 1 and deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    now = dt.datetime.now(dt.UTC)
    piled = []
    for minutes in (30, 20, 10):  # due 30, 20 and 10 minutes ago
        due = (now - dt.timedelta(minutes=minutes)).isoformat()
        answer = prefect_http.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json={
            "parameters": params, "tags": ["auto-scheduled"], "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": due}}})
        answer.raise_for_status()
        piled.append(answer.json()["id"])
    with live_worker(env, tmp_path / "worker.log"):
        states = [wait_finished(api, run_id) for run_id in piled]
    latest = read_run(api, piled[-1])
    assert [(s["type"], s["name"]) for s in states] == [("CANCELLED", "Superseded")] * 2 + [("COMPLETED", "Completed")], (
        states, worker_log(tmp_path))
    assert all(f"a later run of this schedule, {latest['name']} (due " in s["message"] for s in states[:2])
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM observer_ticks").fetchone() == (len(tree.all_ticks()),)
