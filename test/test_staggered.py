"""End to end: the staggered sector runner (signals and kill -9 to its own process; resume; the lock)."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tasks.core.tickers import SECTOR_ETFS
from test.fake_yahoo import FakeYahoo
from test.fix_db import table_rows
from test.fix_yahoo import ROOT, CliRunner, cli_env
from test.test_etf_backfill import END, FIVE_SESSIONS, expected_rows

STAG = "flows.staggered_sector_backfill"
BASE = ("--days", "5", "--end", END, "--retry-wait", "0.01")
FAST = ("--delay", "0.001m")


def chart_order(fake: FakeYahoo) -> list[str]:
    seen: list[str] = []
    for entry in fake.chart_requests():
        if entry.symbol and entry.symbol not in seen:
            seen.append(entry.symbol)
    return seen


def run_statuses(dsn: str) -> list[tuple[str, dict[str, str]]]:
    with psycopg.connect(dsn) as conn:
        runs = conn.execute("SELECT run_id, status FROM backfill_internal.backfill_runs ORDER BY run_id").fetchall()
        return [(status, dict(conn.execute("SELECT ticker, status FROM backfill_internal.backfill_run_items WHERE run_id = %s",
                                           (rid,)).fetchall())) for rid, status in runs]


@pytest.fixture
def spawn(fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start the runner in the background (to signal or kill it)."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", STAG, *args, "--cache-dir", str(tmp_path / "cache")]
        proc = subprocess.Popen(argv, cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def stored_tickers(dsn: str) -> set[str]:
    return {r[0] for r in table_rows(dsn, "etf_daily_bars", "ticker, trade_date")}


@pytest.mark.empty_database
def test_runs_sector_order_one_at_a_time(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(STAG, *BASE, *FAST, as_process=True)  # the command as its own process, once
    assert result.code == 0, result.stderr
    assert chart_order(fake_yahoo) == list(SECTOR_ETFS)
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(SECTOR_ETFS, FIVE_SESSIONS)
    assert "[11/11] XLB fetched" in result.stdout


def test_tickers_subset_keeps_given_order(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(STAG, *BASE, *FAST, "--tickers", "XLF,XLK,XLV")
    assert result.code == 0, result.stderr
    assert chart_order(fake_yahoo) == ["XLF", "XLK", "XLV"]


def test_start_from_skips_earlier_tickers(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(STAG, *BASE, *FAST, "--start-from", "XLE")
    assert result.code == 0, result.stderr
    assert chart_order(fake_yahoo) == ["XLE", "XLU", "XLRE", "XLB"]


def test_start_from_unknown_ticker_lists_valid_ones(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(STAG, *BASE, "--start-from", "SPY")
    assert result.code == 2
    assert "valid: XLK, XLV, XLF, XLY, XLC, XLI, XLP, XLE, XLU, XLRE, XLB" in result.stderr
    assert fake_yahoo.log == []


def test_skip_existing_rerun_makes_zero_requests(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(STAG, *BASE, *FAST).code == 0
    fake_yahoo.reset_log()
    again = run_cli(STAG, *BASE, "--skip-existing", "--delay", "10m")
    assert again.code == 0
    assert fake_yahoo.log == []
    assert again.stdout.count("skipped (already stored)") == 11


def test_cache_hits_cost_no_wait(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(STAG, *BASE, *FAST, "--tickers", "XLK,XLV,XLF").code == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE etf_daily_bars")
    fake_yahoo.reset_log()
    # Ten minutes between fetches: the test would time out if a cache hit waited.
    again = run_cli(STAG, *BASE, "--tickers", "XLK,XLV,XLF", "--delay", "10m", timeout=60)
    assert again.code == 0
    assert fake_yahoo.log == []
    assert again.stdout.count("from cache") == 3
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLK", "XLV", "XLF"], FIVE_SESSIONS)


def test_dry_run_writes_nothing_and_prints_eta(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(STAG, *BASE, *FAST, "--tickers", "XLK").code == 0
    fake_yahoo.reset_log()
    before = dt.datetime.now(dt.UTC)
    result = run_cli(STAG, *BASE, "--skip-existing", "--delay", "2m", "--tickers", "XLK,XLV,XLF,XLY", "--dry-run")
    assert result.code == 0, result.stderr
    assert re.search(r"XLK\s+skip", result.stdout) and re.search(r"XLV\s+fetch", result.stdout)
    assert "Network fetches: 3; waits: 2 x 2 min" in result.stdout
    # 2 waits of 120 s + 3 fetches at the 3 s estimate = 249 s
    assert "(in 4m09s)" in result.stdout
    eta = re.search(r"ETA (\d\d:\d\d:\d\d) UTC", result.stdout)
    assert eta is not None
    eta_at = dt.datetime.combine(before.date(), dt.time.fromisoformat(eta.group(1)), dt.UTC)
    if eta_at < before:
        eta_at += dt.timedelta(days=1)
    assert 240 <= (eta_at - before).total_seconds() <= 270
    assert fake_yahoo.log == []
    assert [s for s, _ in run_statuses(dsn)] == ["done"]  # only the first (real) run
    assert stored_tickers(dsn) == {"XLK"}


def test_failing_ticker_does_not_stop_others_and_retry_command_names_it(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.scripted["XLV"] = [500] * 20
    result = run_cli(STAG, *BASE, *FAST, "--tickers", "XLK,XLV,XLF", "--max-retries", "0")
    assert result.code == 1
    assert stored_tickers(dsn) == {"XLK", "XLF"}
    assert re.search(r"Retry only the failed tickers with:\n  .*flows\.staggered_sector_backfill .*--tickers XLV", result.stdout)
    assert run_statuses(dsn) == [("failed", {"XLK": "done", "XLV": "failed", "XLF": "done"})]


def test_a_ticker_without_data_is_no_failure_of_the_staggered_run(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.unknown.add("XLV")
    result = run_cli(STAG, *BASE, *FAST, "--tickers", "XLK,XLV,XLF")
    assert result.code == 0, result.stdout + result.stderr
    assert "1 no data (XLV)" in result.stdout and "Retry only" not in result.stdout
    assert run_statuses(dsn) == [("done", {"XLK": "done", "XLV": "no_data", "XLF": "done"})]


def test_rate_limit_stops_and_prints_resume_from_first_not_done(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.rate_limit_after = 2
    result = run_cli(STAG, *BASE, *FAST)
    assert result.code == 75
    assert stored_tickers(dsn) == {"XLK", "XLV"}
    assert "--start-from XLF" in result.stdout and "Resume after" in result.stdout
    assert len(fake_yahoo.chart_requests()) == 3


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_wait_then_resume_gives_clean_rows(spawn: Callable[..., subprocess.Popen[str]], run_cli: CliRunner, dsn: str,
                                                         sig: int) -> None:
    proc = spawn(*BASE, "--tickers", "XLK,XLV,XLF", "--delay", "5m")
    wait_for(lambda: stored_tickers(dsn) == {"XLK"})
    time.sleep(0.5)  # now waiting the 5 minutes before XLV
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "To resume, run with: --start-from XLV" in out
    assert re.search(r"flows\.staggered_sector_backfill --days 5 .*--start-from XLV", out)
    assert run_statuses(dsn) == [("interrupted", {"XLK": "done", "XLV": "pending", "XLF": "pending"})]
    resumed = run_cli(STAG, "--resume", *FAST)
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    assert "continuing with XLV, XLF" in resumed.stdout
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLK", "XLV", "XLF"], FIVE_SESSIONS)
    assert run_statuses(dsn) == [("done", {"XLK": "done", "XLV": "done", "XLF": "done"})]


def test_sigint_during_fetch_commits_nothing_of_that_ticker(spawn: Callable[..., subprocess.Popen[str]], run_cli: CliRunner,
                                                             dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.hang_seconds = 20
    fake_yahoo.scripted["XLV"] = ["hang"]
    proc = spawn(*BASE, *FAST, "--tickers", "XLK,XLV,XLF")
    wait_for(lambda: "XLV" in fake_yahoo.in_flight)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "To resume, run with: --start-from XLV" in out
    assert stored_tickers(dsn) == {"XLK"}
    resumed = run_cli(STAG, "--resume", *FAST)
    assert resumed.code == 0, resumed.stderr
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLK", "XLV", "XLF"], FIVE_SESSIONS)


@pytest.mark.reliability
def test_kill_9_then_resume_gives_clean_rows(spawn: Callable[..., subprocess.Popen[str]], run_cli: CliRunner, dsn: str) -> None:
    proc = spawn(*BASE, "--tickers", "XLK,XLV,XLF", "--delay", "5m")
    wait_for(lambda: stored_tickers(dsn) == {"XLK"})
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert run_statuses(dsn) == [("running", {"XLK": "done", "XLV": "pending", "XLF": "pending"})]
    resumed = run_cli(STAG, "--resume", *FAST)
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLK", "XLV", "XLF"], FIVE_SESSIONS)


@pytest.mark.reliability
def test_kill_9_then_skip_existing_rerun_fetches_only_the_rest(spawn: Callable[..., subprocess.Popen[str]], run_cli: CliRunner,
                                                               dsn: str, fake_yahoo: FakeYahoo) -> None:
    proc = spawn(*BASE, "--tickers", "XLK,XLV,XLF", "--delay", "5m")
    wait_for(lambda: stored_tickers(dsn) == {"XLK"})
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    fake_yahoo.reset_log()
    rerun = run_cli(STAG, *BASE, *FAST, "--tickers", "XLK,XLV,XLF", "--skip-existing")
    assert rerun.code == 0
    assert chart_order(fake_yahoo) == ["XLV", "XLF"]
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["XLK", "XLV", "XLF"], FIVE_SESSIONS)


def test_second_concurrent_run_is_refused(spawn: Callable[..., subprocess.Popen[str]], run_cli: CliRunner, dsn: str,
                                          fake_yahoo: FakeYahoo) -> None:
    first = spawn(*BASE, "--tickers", "XLK,XLV", "--delay", "5m")
    wait_for(lambda: stored_tickers(dsn) == {"XLK"})
    requests_before = len(fake_yahoo.log)
    second = run_cli(STAG, *BASE, *FAST, "--tickers", "XLF")
    assert second.code == 75
    assert "another staggered backfill is running" in second.stderr
    assert len(fake_yahoo.log) == requests_before
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=30)


def test_resume_with_nothing_to_resume_is_a_clear_error(run_cli: CliRunner, dsn: str) -> None:
    assert run_cli(STAG, *BASE, *FAST, "--tickers", "XLK").code == 0
    result = run_cli(STAG, "--resume")
    assert result.code == 2
    assert "nothing to resume" in result.stderr


def test_progress_shows_current_ticker_counts_and_eta(run_cli: CliRunner, dsn: str) -> None:
    result = run_cli(STAG, *BASE, "--delay", "0.005m", "--tickers", "XLK,XLV")
    assert result.code == 0
    assert re.search(r"XLV: waiting \d+s \(1 done, 1 left\) \(ETA \d\d:\d\d:\d\d UTC \(in \d+s\)\)", result.stdout), result.stdout
    assert "XLK: fetching (0 done, 2 left)" in result.stdout


def test_sigint_stops_a_run_started_with_sigint_ignored(fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    """As a shell without job control starts `staggered-backfill &`: SIGINT ignored. kill -INT still stops it."""
    argv = [sys.executable, "-m", STAG, *BASE, "--tickers", "XLK,XLV", "--delay", "5m", "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(argv, cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        wait_for(lambda: stored_tickers(dsn) == {"XLK"})
        time.sleep(0.5)  # waiting before XLV
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "To resume, run with: --start-from XLV" in out


def test_a_dry_run_states_one_eta(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(STAG, "--dry-run", "--days", "3", "--delay", "5m")
    assert result.code == 0, result.stderr
    # 11 network fetches: 10 waits of 5 min (slower than the budget's spacing) + 11 x 3 s per fetch = 50 min 33 s.
    assert "need at least" not in result.stdout and result.stdout.count("ETA") == 1
    assert "(in 50m33s)" in result.stdout
    assert fake_yahoo.log == []
