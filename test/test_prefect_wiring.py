"""The Prefect flows themselves (temporary Prefect server per run: slow, so a few cases only)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from test.fake_yahoo import FakeYahoo
from test.fix_db import table_rows
from test.fix_yahoo import CliRunner
from test.jsonl_tree import make_tree
from test.test_etf_backfill import END, FIVE_SESSIONS, expected_rows

pytestmark = pytest.mark.slow


def test_staggered_runner_as_a_prefect_flow(run_cli: CliRunner, dsn: str, prefect_api: dict[str, str]) -> None:
    from test import prefect_http

    result = run_cli("flows.staggered_sector_backfill", "--days", "5", "--end", END, "--delay", "0.001m",
                     "--tickers", "XLK,XLV", "--orchestrate", "prefect", timeout=180)
    assert result.code == 0, result.stderr[-3000:]
    assert "Finished in state Completed" in result.stderr and "backfill-ticker" in result.stderr
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLK", "XLV"], FIVE_SESSIONS)
    # the run's progress artifact, which its Reporter updates as each ticker finishes: both done
    (progress,) = prefect_http.post(f"{prefect_api['PREFECT_API_URL']}/artifacts/filter", timeout=10,
                                    json={"artifacts": {"key": {"any_": ["staggered-sector-backfill-progress"]}},
                                          "sort": "CREATED_DESC", "limit": 1}).json()
    assert (progress["type"], float(progress["data"]), progress["description"]) == ("progress", 100.0, "items done, %")


def test_event_valuation_maps_groups_as_prefect_tasks(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    csv = tmp_path / "e.csv"
    csv.write_text("ticker,event_time,source\nAAA,2025-03-05 15:00:00+00:00,a\nBBB,2025-04-07 15:00:00+00:00,b\n", encoding="utf-8")
    result = run_cli("flows.event_valuation", "--import-csv", str(csv), "--delay", "0", "--end", "2025-06-30",
                     "--group-size", "1", "--orchestrate", "prefect", timeout=180)
    assert result.code == 0, result.stderr[-3000:]
    assert result.stderr.count("value-group") >= 2
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT valuation_status, count(*) FROM events GROUP BY 1").fetchall() == [("ok", 2)]


def test_jsonl_ingest_as_a_prefect_flow(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=1)
    result = run_cli("flows.jsonl_ingest", "--root", str(tree.root), "--orchestrate", "prefect", "--concurrency", "2", timeout=180)
    assert result.code == 0, result.stderr[-3000:]
    # In loader processes as a plain run (threads would share one core), as many as the run's parameter says.
    assert "Loading 3 files in up to 2 loader processes" in result.stdout and "jsonl-ingest" in result.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM observer_ticks").fetchone() == (len(tree.all_ticks()),)


def test_daily_pipeline_stages_run_as_subflows(run_cli: CliRunner, dsn: str, prefect_api: dict[str, str]) -> None:
    from test import prefect_http

    result = run_cli("flows.daily_pipeline", "--stages", "1,2,3", "--end", "2025-06-30", "--days", "21", "--delay", "0",
                     "--rate", "100000/min", "--holdings-rate", "100000/min", "--orchestrate", "prefect", timeout=240)
    assert result.code == 0, result.stderr[-3000:]
    for subflow in ("pipeline-etf-ohlc", "pipeline-etf-holdings", "pipeline-trending"):
        assert subflow in result.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM trending_sectors").fetchone() == (33,)
        # each subflow wrote with the pipeline's run: the run id crossed into them as a parameter
        (pipeline,) = conn.execute("SELECT run_id FROM backfill_internal.backfill_runs WHERE flow = 'daily-pipeline'"
                                   " AND status = 'done'").fetchone() or (None,)
        for table in ("trending_sectors", "etf_holdings"):
            carried = conn.execute(sql.SQL("SELECT DISTINCT run_id FROM {}").format(sql.Identifier(table))).fetchall()
            assert carried == [(pipeline,)], (table, carried)
    # The run's own artifacts: progress counted in stages (all three done) and the summary table.
    latest = {}
    for key in ("daily-pipeline-progress", "daily-pipeline-summary"):
        found = prefect_http.post(f"{prefect_api['PREFECT_API_URL']}/artifacts/filter", timeout=10,
                           json={"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}).json()
        latest[key] = found[0]
    assert latest["daily-pipeline-progress"]["type"] == "progress" and float(latest["daily-pipeline-progress"]["data"]) == 100.0
    assert latest["daily-pipeline-progress"]["description"] == "stages done, %"
    summary = latest["daily-pipeline-summary"]["data"]
    assert summary.startswith("## Daily pipeline (") and all(f"| {s} | " in summary for s in ("etf-ohlc", "etf-holdings", "trending"))


def test_run_states_say_what_happened(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    """No-data tickers: Completed, its message naming them; failed tickers: a Failed state naming them; a
    rate limit: RateLimited with the resume time (exit codes unchanged)."""
    fake_yahoo.unknown.add("ZZZZ")
    fake_yahoo.scripted["XLV"] = [500] * 20
    empty = run_cli("flows.etf_backfill", "--days", "5", "--end", END, "--delay", "0", "--no-batch", "--tickers", "SPY,ZZZZ",
                    "--orchestrate", "prefect", timeout=180)
    assert empty.code == 0, empty.stderr[-3000:]
    final = [line for line in empty.stderr.splitlines() if "Finished in state" in line and "Flow run" in line]
    assert final and "Finished in state Completed(" in final[-1] and "1 no data (ZZZZ)" in final[-1], final
    failed = run_cli("flows.etf_backfill", "--days", "5", "--end", END, "--delay", "0", "--no-batch", "--tickers", "SPY,XLV",
                     "--orchestrate", "prefect", "--max-retries", "0", timeout=180)
    assert failed.code == 1, failed.stderr[-3000:]
    final = [line for line in failed.stderr.splitlines() if "Finished in state" in line and "Flow run" in line]
    assert final and "Finished in state Failed(" in final[-1] and "XLV: HTTP 500" in final[-1], final
    fake_yahoo.blocked_until = float("inf")
    limited = run_cli("flows.etf_backfill", "--days", "5", "--end", END, "--delay", "0", "--tickers", "XLK", "--refresh",
                      "--orchestrate", "prefect", timeout=180)
    assert limited.code == 75, limited.stderr[-3000:]
    final = [line for line in limited.stderr.splitlines() if "Finished in state" in line and "Flow run" in line]
    assert final and "Finished in state RateLimited(" in final[-1] and "resume after 20" in final[-1], final
    assert "not a deployment run" in final[-1]  # a CLI run schedules no continuation: the user reruns the command


def test_ctrl_c_in_a_prefect_run_keeps_what_was_stored_says_so_in_its_artifact_and_crashes_nothing(
        dsn: str, fake_yahoo: FakeYahoo, prefect_api: dict[str, str], tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from test import prefect_http
    from test.fix_yahoo import ROOT, cli_env

    # --delay spaces every request (the cookie and the crumb too): XLK is stored after ~16 s
    args = [sys.executable, "-m", "flows.etf_backfill", "--days", "5", "--end", END, "--no-batch", "--delay", "8",
            "--tickers", "XLK,XLV,XLF", "--orchestrate", "prefect", "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(fake_yahoo, dsn, **prefect_api), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while len(table_rows(dsn, "etf_daily_bars")) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # XLK stored, the run waits 8 s before XLV's request: Ctrl+C
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Continue with:" in out and "flows.etf_backfill --days 5" in out, out
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLK"], FIVE_SESSIONS)
    assert err.count("Crash detected!") <= 1, err  # it was logged twice before the run turned Cancelled
    found = prefect_http.post(f"{prefect_api['PREFECT_API_URL']}/artifacts/filter", timeout=10,
                              json={"artifacts": {"key": {"any_": ["etf-backfill-summary"]}}, "sort": "CREATED_DESC", "limit": 1}).json()
    summary = found[0]["data"]
    assert summary.startswith("## ETF backfill (interrupted)"), summary
    assert "every item stored before the stop is kept" in summary
    assert "1 of 3 items finished before the stop; the last: [1/3] XLK" in summary
