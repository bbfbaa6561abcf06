"""The README's deploy path, typed as a user types it: Prefect's own CLI against a live server
(``prefect-local``, its database in PostgreSQL), ``prefect.yaml``, a process work pool, a worker.

Every deployment in ``prefect.yaml`` starts and finishes through a worker; a run stopped by a rate
limit ends in a state that says so and schedules its own continuation, which finishes the work
once the source recovers, and a deployment that keeps being stopped gives up loudly."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from flows.prefect_glue import BUSY_RETRY_S, STOP_TAG
from test import prefect_http
from test.fake_yahoo import FakeYahoo
from test.fix_db import table_rows
from test.fix_yahoo import ROOT, cli_env
from test.jsonl_tree import make_tree
from test.prefect_cli import (
    POOL,
    create_run,
    delete_waiting_runs,
    filter_runs,
    live_worker,
    prefect,
    read_run,
    run_deployment,
    wait_finished,
    wait_for,
)
from test.rate_helpers import most_in_window
from test.test_etf_backfill import expected_rows

pytestmark = pytest.mark.slow
END = "2025-07-08"
WORKER_RATE = "600/min,20000/h"  # the worker's environment: deployments leave `rate` null


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


def test_every_deployment_in_prefect_yaml_starts_and_finishes_through_a_worker(deployed: dict[str, str], dsn: str,
                                                                                tmp_path: Path) -> None:
    env, api = deployed, deployed["PREFECT_API_URL"]
    cache = str(tmp_path / "cache")
    events = tmp_path / "events.csv"
    events.write_text("ticker,event_time,source\nAAA,2025-03-05 15:00:00+00:00,news\n", encoding="utf-8")
    tree = make_tree(tmp_path / "observer", files=1, minutes_per_file=1)
    runs: dict[str, dict[str, Any]] = {
        "daily-pipeline/weekdays-0900-utc": {"stages": ["etf-ohlc", "etf-holdings", "trending"], "as_of": "2025-06-30", "days": 21,
                                             "delay": 0.0, "holdings_rate": "100000/min", "cache_dir": cache},
        "daily-pipeline/retention-daily-0600-utc": {"keep_realtime_days": 99_999, "keep_daily_days": 99_999},  # keeps the others' rows
        "staggered-sector-backfill/weekly-saturday-0600-utc": {"tickers": ["XLK", "XLV"], "days": 5, "end_date": END,
                                                               "delay_minutes": 0.001, "cache_dir": cache},
        "event-valuation/daily-2230-utc": {"import_csv": str(events), "as_of": "2025-06-30", "delay": 0.0, "cache_dir": cache,
                                           "fundamentals": "none"},
        "jsonl-ingest/every-10-minutes": {"swing": str(tree.root / "swing"), "scalp": str(tree.root / "scalp"),
                                          "gaps": str(tree.root / "system" / "gap_*.jsonl")},
        "etf-backfill/shards": {"tickers": ["SPY"], "days": 5, "end_date": END, "delay": 0.0, "cache_dir": cache},
    }
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    assert {f"{d['entrypoint'].split(':')[1].replace('_', '-')}/{d['name']}" for d in spec["deployments"]} == set(runs)
    ids = {name: run_deployment(name, params, env) for name, params in runs.items()}  # as the README types it
    states = {name: wait_finished(api, run_id, timeout=300) for name, run_id in ids.items()}
    assert {n: s["type"] for n, s in states.items()} == dict.fromkeys(runs, "COMPLETED"), (states, worker_log(tmp_path))
    with psycopg.connect(dsn) as conn:
        # The runs took the worker's YAHOO_RATE (the deployments say rate: null): its binding window, 20000/h.
        (ceiling,) = conn.execute("SELECT ceiling_per_min FROM rate_budgets WHERE name = 'yahoo'").fetchone() or (None,)
        assert ceiling == pytest.approx(20000 / 60)
        assert conn.execute("SELECT count(*) FROM analytics_trending_sectors").fetchone() == (33,)
        assert conn.execute("SELECT count(DISTINCT ticker) FROM analytics_trending_stocks").fetchone() == (3 * 6,)
        assert conn.execute("SELECT valuation_status FROM txn_events").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM scalp_ticks").fetchone() == (len(tree.all_ticks()),)
    staggered = [r for r in table_rows(dsn, "collected_daily_etf_ohlc") if r[0] in ("XLK", "XLV") and r[1] > dt.date(2025, 6, 30)]
    assert staggered == expected_rows(["XLK", "XLV"], [dt.date(2025, 7, 1), dt.date(2025, 7, 2), dt.date(2025, 7, 3),
                                                       dt.date(2025, 7, 7), dt.date(2025, 7, 8)])


STAGGERED = "staggered-sector-backfill/weekly-saturday-0600-utc"
FIVE_SESSIONS = [dt.date(2025, 7, 1), dt.date(2025, 7, 2), dt.date(2025, 7, 3), dt.date(2025, 7, 7), dt.date(2025, 7, 8)]


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
    first = create_run(api, STAGGERED, params)
    state = wait_finished(api, first)
    assert (state["type"], state["name"]) == ("CANCELLED", "RateLimited"), state
    (pending,) = continuations(api, read_run(api, first)["deployment_id"])
    due = dt.datetime.fromisoformat(pending["expected_start_time"]).timestamp()
    fake_yahoo.blocked_until = None  # the source recovers

    ended = wait_finished(api, pending["id"])
    assert ended["type"] == "COMPLETED", (ended, worker_log(tmp_path))
    started = dt.datetime.fromisoformat(read_run(api, pending["id"])["start_time"]).timestamp()
    after = [entry.at for entry in fake_yahoo.log if entry.status == 200 and "/chart/" in entry.path]
    assert after and min(after) >= due, (min(after) - due, started - due)
    assert table_rows(dsn, "collected_daily_etf_ohlc") == expected_rows(["XLK"], FIVE_SESSIONS)
    assert not continuations(api, pending["deployment_id"])


def test_a_deployment_run_that_finds_the_database_busy_is_continued_without_counting_a_stop(
        deployed: dict[str, str], fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    api = deployed["PREFECT_API_URL"]
    # Another staggered run (a terminal's) holds the database: it waits a minute between its fetches.
    holder = subprocess.Popen([sys.executable, "-m", "flows.staggered_sector_backfill", "--tickers", "XLK,XLV", "--days", "5",
                               "--end-date", END, "--delay-minutes", "1", "--cache-dir", str(tmp_path / "cli-cache")],
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


BAD_PARAMETERS = {"timeout": 0, "max_retries": -1, "retry_wait": -1, "rate_limit_sleep": -10, "delay_minutes": -3,
                  "tickers": ["XLK", "no good"]}  # a wrong JSON type (skip_existing="yes") the server's schema refuses itself


def test_a_deployment_run_refuses_what_the_cli_refuses_before_writing_anything(deployed: dict[str, str], fake_yahoo: FakeYahoo,
                                                                                dsn: str, tmp_path: Path, run_cli: Any) -> None:
    api = deployed["PREFECT_API_URL"]
    for key, value in BAD_PARAMETERS.items():  # the command refuses each (exit 2)
        flag = "--" + key.replace("_", "-")
        text = ",".join(value) if isinstance(value, list) else str(value)
        assert run_cli("flows.staggered_sector_backfill", flag, text, "--dry-run").code == 2, key
    # Every parameter goes through the one check a flow run makes first (check_values, in process);
    # two of them also through whole deployment runs on the worker, a number and a list.
    from flows import staggered_sector_backfill as staggered
    from flows.params import check_values, defaults
    from tasks.core.errors import BadInput

    for key, value in BAD_PARAMETERS.items():
        with pytest.raises(BadInput, match=f"^parameter {key}:"):
            check_values(staggered.PARAMS, {**defaults(staggered.PARAMS), key: value})
    ids = {key: create_run(api, STAGGERED, {"tickers": ["XLK"], "days": 5, "end_date": END, key: BAD_PARAMETERS[key]})
           for key in ("timeout", "tickers")}
    for key, run_id in ids.items():
        state = wait_finished(api, run_id)
        assert (state["type"], state["name"]) == ("FAILED", "BadInput"), (key, state)
        assert f"parameter {key}:" in state["message"] and "Traceback" not in state["message"], state["message"]
    assert fake_yahoo.log == []
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('backfill_runs')").fetchone()
        assert exists is None or exists[0] is None or conn.execute("SELECT count(*) FROM backfill_runs").fetchone() == (0,)


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
        assert conn.execute("SELECT status FROM backfill_runs").fetchall() == [("done",)]
    assert read_run(api, run_id)["run_count"] == 1
    again = prefect_local_cli("run-now", run_id, env=env)
    assert again.returncode == 2 and "not scheduled" in again.stderr


def prefect_local_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.prefect_local", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_one_http_post_starts_event_valuation_through_a_worker(deployed: dict[str, str], dsn: str, tmp_path: Path) -> None:
    """Seed 000's `POST /backfillEventsTable`: Prefect's REST API, as the README shows it (an HTTP client, no Prefect code)."""
    from test import prefect_http

    api = deployed["PREFECT_API_URL"]
    events = tmp_path / "events.csv"
    events.write_text("ticker,event_time,source\nAAA,2025-03-05 15:00:00+00:00,news\n", encoding="utf-8")
    deployment = prefect_http.get(f"{api}/deployments/name/event-valuation/daily-2230-utc", timeout=10).json()
    answer = prefect_http.post(f"{api}/deployments/{deployment['id']}/create_flow_run", timeout=10, json={"parameters": {
        "import_csv": str(events), "as_of": "2025-06-30", "delay": 0.0, "cache_dir": str(tmp_path / "cache"), "fundamentals": "none"}})
    assert answer.status_code == 201, answer.text
    state = wait_finished(api, answer.json()["id"])
    assert state["type"] == "COMPLETED", (state, worker_log(tmp_path))
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT ticker, valuation_status FROM txn_events").fetchall() == [("AAA", "ok")]


def test_a_fanned_out_valuation_gives_each_shard_to_the_pool_and_a_restarted_parent_submits_none_twice(
        deployed: dict[str, str], dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    import zlib

    from test import prefect_http

    api = deployed["PREFECT_API_URL"]
    tickers = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"]
    events = tmp_path / "events.csv"
    events.write_text("ticker,event_time,source\n" + "".join(f"{t},2025-03-05 15:00:00+00:00,news\n" for t in tickers),
                      encoding="utf-8")
    params = {"import_csv": str(events), "as_of": "2025-06-30", "delay": 0.0, "cache_dir": str(tmp_path / "cache"),
              "fundamentals": "none", "shards": 2, "concurrency": 2, "group_size": 1}
    fake_yahoo.latency = 1.5  # long enough that groups started together overlap, however slow the machine
    parent = run_deployment("event-valuation/daily-2230-utc", params, deployed)  # `prefect deployment run ... -p shards=2`
    state = wait_finished(api, parent, timeout=300)
    assert state["type"] == "COMPLETED", (state, worker_log(tmp_path))
    assert "All 2 shards completed" in state["message"]

    def shards() -> list[dict[str, Any]]:
        return filter_runs(api, flow_runs={"tags": {"all_": [f"fan-out-{parent}"]}}, sort="EXPECTED_START_TIME_ASC")

    children = shards()
    assert sorted(r["parameters"]["shard"] for r in children) == ["1/2", "2/2"]
    assert all(r["state"]["type"] == "COMPLETED" and r["parameters"]["shards"] == 1 and r["parameters"]["import_csv"] is None
               for r in children)
    assert all(r["parent_task_run_id"] for r in children)  # subflows of the parent in the UI
    # Each ticker was fetched once, by the shard its name's CRC-32 gives it (an independent split).
    by_shard = {r["parameters"]["shard"]: r["id"] for r in children}
    fetched = [e.symbol for e in fake_yahoo.chart_requests() if e.symbol != "SPY"]
    assert sorted(fetched) == tickers
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT ticker, valuation_status FROM txn_events ORDER BY 1").fetchall() == [(t, "ok") for t in tickers]
    # Each shard run took 2 groups at a time, as its `concurrency` said (its flow was built with 10 before).
    arrivals = {shard: [e.at for e in fake_yahoo.chart_requests() if e.symbol in tickers
                        and zlib.crc32(str(e.symbol).encode()) % 2 == int(shard[0]) - 1] for shard in by_shard}
    assert max(most_in_window(times, 1.5) for times in arrivals.values()) == 2, arrivals
    logs = prefect_http.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": list(by_shard.values())}}, "limit": 200},
                      timeout=10).json()
    for shard, run_id in by_shard.items():
        mine = [t for t in tickers if zlib.crc32(t.encode()) % 2 == int(shard[0]) - 1]
        said = " ".join(entry["message"] for entry in logs if entry["flow_run_id"] == run_id)
        assert f"Shard {shard}: {len(mine)} of the tickers with events" in said, said

    # The parent run again (a restart: the same flow run): it finds its shards, submits none again.
    prefect_http.post(f"{api}/flow_runs/{parent}/set_state", json={"state": {"type": "SCHEDULED"}, "force": True},
               timeout=10).raise_for_status()
    again = wait_finished(api, parent, timeout=300)
    assert again["type"] == "COMPLETED", (again, worker_log(tmp_path))
    assert sorted(r["id"] for r in shards()) == sorted(r["id"] for r in children)


def test_resume_through_the_deployment_works_as_typed_with_resume_true_alone(deployed: dict[str, str], fake_yahoo: FakeYahoo,
                                                                             dsn: str, tmp_path: Path) -> None:
    """``prefect deployment run staggered-sector-backfill/weekly-saturday-0600-utc -p resume=true``
    continues the run a terminal's Ctrl+C interrupted, with that run's own flags: the deployment's
    skip_existing=true no longer makes it a BadInput naming a CLI flag."""
    api = deployed["PREFECT_API_URL"]
    cut = subprocess.Popen([sys.executable, "-m", "flows.staggered_sector_backfill", "--tickers", "XLK,XLV,XLF", "--days", "5",
                            "--end-date", END, "--delay-minutes", "1", "--cache-dir", str(tmp_path / "cli-cache")],
                           cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: any("/chart/XLK" in entry.path for entry in fake_yahoo.log), 60, "the terminal's run to fetch XLK")
    wait_for(lambda: len(table_rows(dsn, "collected_daily_etf_ohlc")) == 5, 60, "XLK stored")
    cut.send_signal(signal.SIGINT)
    said = cut.communicate(timeout=60)[0]
    assert cut.returncode == 130 and "--resume" in said, said
    # (the README's "may be combined with --delay-minutes": a shorter wait, and a cache of the worker's own)
    run_id = run_deployment(STAGGERED, {"resume": True, "delay_minutes": 0.001, "cache_dir": str(tmp_path / "cache")}, deployed)
    state = wait_finished(api, run_id)
    assert state["type"] == "COMPLETED", (state, worker_log(tmp_path))
    assert table_rows(dsn, "collected_daily_etf_ohlc") == expected_rows(["XLF", "XLK", "XLV"], FIVE_SESSIONS)  # the run's own tickers
    assert not [e for e in fake_yahoo.log if "/chart/XLK" in e.path][1:]  # XLK, done before the cut, not fetched again


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
        assert conn.execute("SELECT count(*) FROM scalp_ticks").fetchone() == (len(tree.all_ticks()),)
