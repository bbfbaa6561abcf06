"""The README's deploy path, typed as a user types it: Prefect's own CLI against a live server
(``prefect-local``, its database in PostgreSQL), ``prefect.yaml``, a process work pool, a worker.

Every deployment in ``prefect.yaml`` starts and finishes through a worker, from Prefect's CLI and
from one HTTP post; a deployment run refuses what the command refuses; a fanned-out run gives each
shard to the pool; ``-p resume=true`` continues an interrupted run. (Stops and continuations:
test_continuations.py.)"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from test import prefect_http
from test.fake_yahoo import FakeYahoo
from test.fix_db import table_rows
from test.fix_deploy import END, FIVE_SESSIONS, STAGGERED, worker_log
from test.fix_yahoo import ROOT, cli_env
from test.jsonl_tree import make_tree
from test.nyse_days import closed_trading_days, session_hours
from test.prefect_cli import create_run, filter_runs, run_deployment, wait_finished, wait_for
from test.rate_helpers import most_in_window
from test.test_etf_backfill import expected_rows

pytestmark = pytest.mark.slow


ON_DEMAND = ["IBM", "ORCL", "CSCO", "INTC", "QCOM"]


def test_every_deployment_in_prefect_yaml_starts_and_finishes_through_a_worker(deployed: dict[str, str], dsn: str, fake_yahoo: FakeYahoo,
                                                                                tmp_path: Path) -> None:
    env, api = deployed, deployed["PREFECT_API_URL"]
    recent = closed_trading_days(2)  # the watchlist run's sessions (see the end)
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
        # fanned out: two shard runs of the deployment, each its share of the tickers
        "backfill/on-demand": {"tickers": ON_DEMAND, "start": "2025-07-07", "end": END, "delay": 0.0, "cache_dir": cache, "shards": 2},
        # the checkout's watchlist.txt: daily and 1-minute bars of the last 2 sessions (inside Yahoo's 1m window)
        "backfill/watchlist-weekdays-2215-utc": {"days": 2, "delay": 0.0, "cache_dir": cache},
    }
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    assert {f"{d['entrypoint'].split(':')[1].replace('_', '-')}/{d['name']}" for d in spec["deployments"]} == set(runs)
    # Two as the README types them (`prefect deployment run NAME -p key=value`: lists, numbers, strings,
    # a bool in the shard runs); the others through the API call that command makes (a process less each).
    typed = {"daily-pipeline/weekdays-0900-utc", "backfill/on-demand"}
    ids = {name: run_deployment(name, params, env) if name in typed else create_run(api, name, params) for name, params in runs.items()}
    states = {name: wait_finished(api, run_id, timeout=300) for name, run_id in ids.items()}
    assert {n: s["type"] for n, s in states.items()} == dict.fromkeys(runs, "COMPLETED"), (states, worker_log(tmp_path))
    with psycopg.connect(dsn) as conn:
        # The runs took the worker's YAHOO_RATE (the deployments say rate: null): its binding window, 20000/h.
        (ceiling,) = conn.execute("SELECT ceiling_per_min FROM backfill_internal.rate_budgets WHERE name = 'yahoo'").fetchone() or (None,)
        assert ceiling == pytest.approx(20000 / 60)
        assert conn.execute("SELECT count(*) FROM trending_sectors").fetchone() == (33,)
        assert conn.execute("SELECT count(DISTINCT ticker) FROM trending_stocks").fetchone() == (3 * 6,)
        assert conn.execute("SELECT valuation_status FROM events").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM observer_ticks").fetchone() == (len(tree.all_ticks()),)
    stocks = {r[:2] for r in table_rows(dsn, "stock_daily_bars") if r[1] > dt.date(2025, 7, 3)}
    lines = (ROOT / "watchlist.txt").read_text(encoding="utf-8").splitlines()
    watchlist = [t.strip() for t in lines if t.strip() and not t.startswith("#")]
    assert {(t, d) for t in ON_DEMAND for d in (dt.date(2025, 7, 7), dt.date(2025, 7, 8))} <= stocks
    daily = {r[:2] for r in table_rows(dsn, "stock_daily_bars")}
    with psycopg.connect(dsn) as conn:
        per_ticker = dict(conn.execute("SELECT ticker, count(*) FROM intraday_bars WHERE interval = '1m' GROUP BY 1").fetchall())

    def collected(recent: list[dt.date]) -> bool:
        minutes = sum(int((close - open_).total_seconds() // 60) for open_, close in map(session_hours, recent))
        return {(t, d) for t in watchlist for d in recent} <= daily and per_ticker == dict.fromkeys(watchlist, minutes)

    # the last 2 closed sessions when the run planned: those of the test's start, or of now if one closed meanwhile
    assert collected(recent) or collected(closed_trading_days(2)), (recent, per_ticker)
    shards = filter_runs(api, flow_runs={"tags": {"all_": [f"fan-out-{ids['backfill/on-demand']}"]}})
    assert sorted((r["parameters"]["shard"], r["state"]["type"]) for r in shards) == [("1/2", "COMPLETED"), ("2/2", "COMPLETED")]
    fetched = [e.symbol for e in fake_yahoo.chart_requests() if e.symbol in ON_DEMAND]
    assert sorted(fetched) == sorted(ON_DEMAND)  # each by one shard, once
    staggered = [r for r in table_rows(dsn, "etf_daily_bars") if r[0] in ("XLK", "XLV") and r[1] > dt.date(2025, 6, 30)]
    assert staggered == expected_rows(["XLK", "XLV"], [dt.date(2025, 7, 1), dt.date(2025, 7, 2), dt.date(2025, 7, 3),
                                                       dt.date(2025, 7, 7), dt.date(2025, 7, 8)])


BAD_PARAMETERS = {"timeout": 0, "max_retries": -1, "retry_wait": -1, "rate_limit_sleep": -10, "delay_minutes": -3,
                  "tickers": ["XLK", "no good"]}  # a wrong JSON type (skip_existing="yes") the server's schema refuses itself


@pytest.mark.empty_database
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
        exists = conn.execute("SELECT to_regclass('backfill_internal.backfill_runs')").fetchone()
        assert exists is None or exists[0] is None or conn.execute(
            "SELECT count(*) FROM backfill_internal.backfill_runs").fetchone() == (0,)


def test_one_http_post_starts_event_valuation_through_a_worker(deployed: dict[str, str], dsn: str, tmp_path: Path) -> None:
    """Seed 000's `POST /backfillEventsTable`: Prefect's REST API, as the README shows it (an HTTP client, no Prefect code)."""

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
        assert conn.execute("SELECT ticker, valuation_status FROM events").fetchall() == [("AAA", "ok")]


def test_a_fanned_out_valuation_gives_each_shard_to_the_pool_and_a_restarted_parent_submits_none_twice(
        deployed: dict[str, str], dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    import zlib


    api = deployed["PREFECT_API_URL"]
    tickers = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF", "GGG", "HHH"]
    events = tmp_path / "events.csv"
    events.write_text("ticker,event_time,source\n" + "".join(f"{t},2025-03-05 15:00:00+00:00,news\n" for t in tickers),
                      encoding="utf-8")
    params = {"import_csv": str(events), "as_of": "2025-06-30", "delay": 0.0, "cache_dir": str(tmp_path / "cache"),
              "fundamentals": "none", "shards": 2, "concurrency": 2, "group_size": 1}
    fake_yahoo.latency = 1.5  # long enough that groups started together overlap, however slow the machine
    overrides = {"env": {"BACKFILL_MAX_CONSECUTIVE_STOPS": "4"}}  # for the worker: each shard runs with them too
    parent = run_deployment("event-valuation/daily-2230-utc", params, deployed, overrides)  # `... -p shards=2 -jv env=...`
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
    assert [r["job_variables"] for r in children] == [overrides, overrides]
    # Each ticker was fetched once, by the shard its name's CRC-32 gives it (an independent split).
    by_shard = {r["parameters"]["shard"]: r["id"] for r in children}
    fetched = [e.symbol for e in fake_yahoo.chart_requests() if e.symbol != "SPY"]
    assert sorted(fetched) == tickers
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT ticker, valuation_status FROM events ORDER BY 1").fetchall() == [(t, "ok") for t in tickers]
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
                            "--end", END, "--delay", "1m", "--cache-dir", str(tmp_path / "cli-cache")],
                           cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: any("/chart/XLK" in entry.path for entry in fake_yahoo.log), 60, "the terminal's run to fetch XLK")
    wait_for(lambda: len(table_rows(dsn, "etf_daily_bars")) == 5, 60, "XLK stored")
    cut.send_signal(signal.SIGINT)
    said = cut.communicate(timeout=60)[0]
    assert cut.returncode == 130 and "--resume" in said, said
    # (the README's "may be combined with --delay": a shorter wait, and a cache of the worker's own)
    run_id = run_deployment(STAGGERED, {"resume": True, "delay_minutes": 0.001, "cache_dir": str(tmp_path / "cache")}, deployed)
    state = wait_finished(api, run_id)
    assert state["type"] == "COMPLETED", (state, worker_log(tmp_path))
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLF", "XLK", "XLV"], FIVE_SESSIONS)  # the run's own tickers
    assert not [e for e in fake_yahoo.log if "/chart/XLK" in e.path][1:]  # XLK, done before the cut, not fetched again
