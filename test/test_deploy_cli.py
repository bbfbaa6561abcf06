"""The README's deploy path, typed as a user types it: Prefect's own CLI against a live server
(``prefect-local``, its database in PostgreSQL), ``prefect.yaml``, a process work pool, a worker.

Every deployment in ``prefect.yaml`` starts and finishes through a worker; a run stopped by a rate
limit ends in a state that says so and schedules its own continuation, which finishes the work
once the source recovers, and a deployment that keeps being stopped gives up loudly."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from test.fake_yahoo import FakeYahoo
from test.fix_db import table_rows
from test.fix_yahoo import ROOT, cli_env
from test.jsonl_tree import make_tree
from test.prefect_cli import POOL, filter_runs, prefect, read_run, run_deployment, run_until_finished, work_once
from test.test_etf_backfill import expected_rows

pytestmark = pytest.mark.slow
END = "2025-07-08"
WORKER_RATE = "600/min,20000/h"  # the worker's environment: deployments leave `rate` null


def continuations(api: str, deployment_id: str) -> list[dict[str, Any]]:
    return filter_runs(api, deployments={"id": {"any_": [deployment_id]}}, flow_runs={"tags": {"all_": ["continuation"]}},
                       sort="EXPECTED_START_TIME_ASC")


@pytest.fixture
def deployed(fake_yahoo: FakeYahoo, dsn: str, prefect_api: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """``prefect work-pool create`` + ``prefect deploy --all`` from prefect.yaml; env for the worker."""
    env = {**cli_env(fake_yahoo, dsn), **prefect_api, "MARKET_BACKFILL_HOME": str(ROOT), "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_WORKER_PREFETCH_SECONDS": "1", "BACKFILL_MAX_CONSECUTIVE_STOPS": "3", "YAHOO_RATE": WORKER_RATE}
    prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
    out = prefect("deploy", "--all", "--no-prompt", env=env)
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    for d in spec["deployments"]:
        assert d["name"] in out, out
    # Schedules would start real runs while the test works: pause them (manual runs still go).
    prefect("deployment", "schedule", "pause", "--all", "--no-prompt", env=env)
    yield env
    prefect("deployment", "schedule", "resume", "--all", "--no-prompt", env=env)


def test_every_deployment_in_prefect_yaml_starts_and_finishes_through_a_worker(deployed: dict[str, str], dsn: str,
                                                                                tmp_path: Path) -> None:
    env, api = deployed, deployed["PREFECT_API_URL"]
    cache = str(tmp_path / "cache")
    events = tmp_path / "events.csv"
    events.write_text("ticker,event_time,source\nAAA,2025-03-05 15:00:00+00:00,news\n", encoding="utf-8")
    tree = make_tree(tmp_path / "observer", files=1, minutes_per_file=1)
    runs = {
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
    ids = {name: run_deployment(name, params, env) for name, params in runs.items()}
    work_once(env, tmp_path / "worker.log")
    states = {name: read_run(api, run_id)["state"] for name, run_id in ids.items()}
    assert {n: s["type"] for n, s in states.items()} == dict.fromkeys(runs, "COMPLETED"), (states,
                                                                                           (tmp_path / "worker.log").read_text()[-4000:])
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


def test_a_rate_limited_deployment_run_schedules_its_continuation_until_the_source_recovers(
        deployed: dict[str, str], fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    env, api = deployed, deployed["PREFECT_API_URL"]
    name = "staggered-sector-backfill/weekly-saturday-0600-utc"
    params = {"tickers": ["XLK"], "days": 5, "end_date": END, "delay_minutes": 0.001, "rate_limit_sleep": 40.0,
              "cache_dir": str(tmp_path / "cache")}
    log = tmp_path / "worker.log"
    fake_yahoo.blocked_until = time.time() + 3600  # every request gets 429 until further notice

    first = run_deployment(name, params, env)
    work_once(env, log)
    state = read_run(api, first)["state"]
    assert (state["type"], state["name"]) == ("CANCELLED", "RateLimited"), state
    assert "resume after 20" in state["message"] and "continuation" in state["message"]
    deployment_id = read_run(api, first)["deployment_id"]
    (pending,) = continuations(api, deployment_id)
    assert pending["state"]["type"] == "SCHEDULED" and pending["parameters"] == read_run(api, first)["parameters"]
    resume_at = dt.datetime.fromisoformat(state["message"].split("resume after ")[1][:19]).replace(tzinfo=dt.UTC)
    assert abs(dt.datetime.fromisoformat(pending["expected_start_time"]) - resume_at) <= dt.timedelta(seconds=1)

    # A second stop while the continuation waits (the shared budget is cooling down for 40 s: long
    # enough that this run never meets the continuation in one worker poll) adds no second one.
    again = run_deployment(name, params, env)
    run_until_finished(env, log, api, again)
    assert read_run(api, again)["state"]["name"] == "RateLimited"
    assert len([r for r in continuations(api, deployment_id) if r["state"]["type"] == "SCHEDULED"]) == 1

    # Another shard (other tickers) stopped meanwhile gets a continuation of its own.
    shard = run_deployment(name, {**params, "tickers": ["XLV"]}, env)
    run_until_finished(env, log, api, shard)
    assert read_run(api, shard)["state"]["name"] == "RateLimited"
    waiting = [r for r in continuations(api, deployment_id) if r["state"]["type"] == "SCHEDULED"]
    assert sorted(tuple(r["parameters"]["tickers"]) for r in waiting) == [("XLK",), ("XLV",)]

    # The source recovers: each continuation runs at its time and finishes its shard's work. Both
    # come due together and the staggered runner takes one at a time: the one that finds the
    # database busy is continued a minute later ("Busy", not counted as a rate-limit stop).
    fake_yahoo.blocked_until = None
    busy = 0
    for tickers in (["XLK"], ["XLV"]):
        run_id = next(r["id"] for r in waiting if r["parameters"]["tickers"] == tickers)
        ended = run_until_finished(env, log, api, run_id)
        assert dt.datetime.fromisoformat(read_run(api, run_id)["start_time"]) >= resume_at
        if ended["name"] == "Busy":
            busy += 1
            assert ended["type"] == "CANCELLED" and "another run holds the database" in ended["message"], ended
            (run_id,) = [r["id"] for r in continuations(api, deployment_id)
                         if r["state"]["type"] == "SCHEDULED" and r["parameters"]["tickers"] == tickers]
            ended = run_until_finished(env, log, api, run_id, timeout=180)
        assert ended["type"] == "COMPLETED", (tickers, ended, log.read_text()[-3000:])
    assert busy <= 1
    assert table_rows(dsn, "collected_daily_etf_ohlc") == expected_rows(["XLK", "XLV"], [dt.date(2025, 7, 1), dt.date(2025, 7, 2),
                                                                                          dt.date(2025, 7, 3), dt.date(2025, 7, 7),
                                                                                          dt.date(2025, 7, 8)])
    assert not [r for r in continuations(api, deployment_id) if r["state"]["type"] == "SCHEDULED"]


def test_a_deployment_stopped_again_and_again_gives_up_loudly(deployed: dict[str, str], fake_yahoo: FakeYahoo,
                                                             tmp_path: Path) -> None:
    env, api = deployed, deployed["PREFECT_API_URL"]
    name = "staggered-sector-backfill/weekly-saturday-0600-utc"
    params = {"tickers": ["XLV"], "days": 5, "end_date": END, "delay_minutes": 0.001, "rate_limit_sleep": 1.0,
              "cache_dir": str(tmp_path / "cache")}
    log = tmp_path / "worker.log"
    fake_yahoo.blocked_until = time.time() + 3600
    run_id = run_deployment(name, params, env)
    deployment_id = ""
    for _ in range(3):  # the first run, then continuations 1 and 2 (BACKFILL_MAX_CONSECUTIVE_STOPS=3)
        run_until_finished(env, log, api, run_id)
        run = read_run(api, run_id)
        deployment_id = run["deployment_id"]
        waiting = [r for r in continuations(api, deployment_id) if r["state"]["type"] == "SCHEDULED"]
        if not waiting:
            break
        run_id = waiting[0]["id"]
    state = read_run(api, run_id)["state"]
    assert (state["type"], state["name"]) == ("FAILED", "RateLimited"), state
    assert "3 times in a row" in state["message"]
    assert not [r for r in continuations(api, deployment_id) if r["state"]["type"] == "SCHEDULED"]


BAD_PARAMETERS = {"timeout": 0, "max_retries": -1, "retry_wait": -1, "rate_limit_sleep": -10, "delay_minutes": -3,
                  "tickers": ["XLK", "no good"]}  # a wrong JSON type (skip_existing="yes") the server's schema refuses itself


def test_a_deployment_run_refuses_what_the_cli_refuses_before_writing_anything(deployed: dict[str, str], fake_yahoo: FakeYahoo,
                                                                                dsn: str, tmp_path: Path, run_cli: Any) -> None:
    env, api = deployed, deployed["PREFECT_API_URL"]
    name = "staggered-sector-backfill/weekly-saturday-0600-utc"
    for key, value in BAD_PARAMETERS.items():  # the command refuses each (exit 2)
        flag = "--" + key.replace("_", "-")
        text = ",".join(value) if isinstance(value, list) else str(value)
        assert run_cli("flows.staggered_sector_backfill", flag, text, "--dry-run").code == 2, key
    ids = {key: run_deployment(name, {"tickers": ["XLK"], "days": 5, "end_date": END, key: value}, env)
           for key, value in BAD_PARAMETERS.items()}
    work_once(env, tmp_path / "worker.log")
    for key, run_id in ids.items():
        state = read_run(api, run_id)["state"]
        assert (state["type"], state["name"]) == ("FAILED", "BadInput"), (key, state)
        assert f"parameter {key}:" in state["message"] and "Traceback" not in state["message"], state["message"]
    assert fake_yahoo.log == []
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('backfill_runs')").fetchone()
        assert exists is None or exists[0] is None or conn.execute("SELECT count(*) FROM backfill_runs").fetchone() == (0,)


def test_a_continuation_run_early_with_prefect_local_run_now_runs_once(deployed: dict[str, str], dsn: str, tmp_path: Path) -> None:
    env, api = deployed, deployed["PREFECT_API_URL"]
    name = "staggered-sector-backfill/weekly-saturday-0600-utc"
    params = {"tickers": ["XLK"], "days": 5, "end_date": END, "delay_minutes": 0.001, "cache_dir": str(tmp_path / "cache")}
    flags = [x for k, v in params.items() for x in ("-p", f"{k}={json.dumps(v)}")]
    out = prefect("deployment", "run", name, "--start-in", "1 hour", *flags, env=env)
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)  # type: ignore[union-attr]
    work_once(env, tmp_path / "worker.log")  # not due: the worker leaves it
    assert read_run(api, run_id)["state"]["type"] == "SCHEDULED"
    moved = prefect_local_cli("run-now", run_id, env=env)
    assert moved.returncode == 0, moved.stderr
    assert run_until_finished(env, tmp_path / "worker.log", api, run_id)["type"] == "COMPLETED"
    work_once(env, tmp_path / "worker.log")  # a second pass finds nothing more to run
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT status FROM backfill_runs").fetchall() == [("done",)]
    again = prefect_local_cli("run-now", run_id, env=env)
    assert again.returncode == 2 and "not scheduled" in again.stderr


def prefect_local_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.prefect_server", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


def test_one_http_post_starts_event_valuation_through_a_worker(deployed: dict[str, str], dsn: str, tmp_path: Path) -> None:
    """Seed 000's `POST /backfillEventsTable`: Prefect's REST API, as the README shows it (an HTTP client, no Prefect code)."""
    import httpx

    env, api = deployed, deployed["PREFECT_API_URL"]
    events = tmp_path / "events.csv"
    events.write_text("ticker,event_time,source\nAAA,2025-03-05 15:00:00+00:00,news\n", encoding="utf-8")
    deployment = httpx.get(f"{api}/deployments/name/event-valuation/daily-2230-utc", timeout=10).json()
    answer = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", timeout=10, json={"parameters": {
        "import_csv": str(events), "as_of": "2025-06-30", "delay": 0.0, "cache_dir": str(tmp_path / "cache"), "fundamentals": "none"}})
    assert answer.status_code == 201, answer.text
    state = run_until_finished(env, tmp_path / "worker.log", api, answer.json()["id"])
    assert state["type"] == "COMPLETED", (state, (tmp_path / "worker.log").read_text()[-3000:])
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT ticker, valuation_status FROM txn_events").fetchall() == [("AAA", "ok")]
