"""End to end: the ETF backfill command (in the test process as its subprocess would run it, once as
its own process), real yfinance → fake Yahoo, real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tasks.core.tickers import ETF_UNIVERSE
from test.fake_yahoo import FakeYahoo, bar_for
from test.fix_db import end_cooldown, table_rows
from test.fix_prefect import local_prefect_env, prefect_local
from test.fix_yahoo import CliRunner
from test.prefect_http import exported

ETF = "flows.etf_backfill"
END = "2025-07-08"
# Hand-checked: the 5 NYSE sessions ending 2025-07-08; Friday 2025-07-04 is Independence Day.
FIVE_SESSIONS = [dt.date(2025, 7, 1), dt.date(2025, 7, 2), dt.date(2025, 7, 3), dt.date(2025, 7, 7), dt.date(2025, 7, 8)]
BASE = ("--days", "5", "--end", END, "--delay", "0", "--retry-wait", "0.01")


def expected_rows(tickers: list[str] | tuple[str, ...], days: list[dt.date]) -> list[tuple]:
    rows = []
    for t in sorted(tickers):
        for d in days:
            b = bar_for(t, d)
            rows.append((t, d, b["open"], b["high"], b["low"], b["close"], b["adj_close"], b["volume"]))
    return rows


@pytest.mark.empty_database
def test_cold_run_stores_every_etf_session_with_source_values(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(ETF, *BASE, as_process=True)  # the command as its own process, once
    assert result.code == 0, result.stderr
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(ETF_UNIVERSE, FIVE_SESSIONS)
    assert "Prices: 60 new, 0 updated, 0 skipped, 0 errors" in result.stdout
    assert "[12/12]" in result.stdout
    assert {e.symbol for e in fake_yahoo.chart_requests()} == set(ETF_UNIVERSE)
    with psycopg.connect(dsn) as conn:
        sources = conn.execute("SELECT DISTINCT source FROM etf_daily_bars").fetchall()
        run = conn.execute("SELECT status, summary FROM backfill_internal.backfill_runs").fetchall()
    assert sources == [("yahoo",)]
    assert run == [("done", "Prices: 60 new, 0 updated, 0 skipped, 0 errors")]


def test_days_counts_nyse_sessions_not_weekdays(run_cli: CliRunner, dsn: str) -> None:
    result = run_cli(ETF, "--tickers", "SPY", "--days", "3", "--end", "2025-07-07", "--delay", "0")
    assert result.code == 0, result.stderr
    dates = [r[1] for r in table_rows(dsn, "etf_daily_bars")]
    assert dates == [dt.date(2025, 7, 2), dt.date(2025, 7, 3), dt.date(2025, 7, 7)]


def test_rerun_within_24h_makes_zero_requests(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(ETF, *BASE).code == 0
    fake_yahoo.reset_log()
    again = run_cli(ETF, *BASE)
    assert again.code == 0
    assert fake_yahoo.log == []
    assert "Prices: 0 new, 0 updated, 60 skipped, 0 errors" in again.stdout
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(ETF_UNIVERSE, FIVE_SESSIONS)


def test_rerun_on_empty_database_is_served_from_cache(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(ETF, *BASE).code == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE etf_daily_bars")
    fake_yahoo.reset_log()
    again = run_cli(ETF, *BASE)
    assert again.code == 0, again.stderr
    assert fake_yahoo.log == []
    assert again.stdout.count("from cache") == 12
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(ETF_UNIVERSE, FIVE_SESSIONS)


def test_partial_cache_fetches_only_missing_tickers(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    first = ["SPY", "XLK", "XLV", "XLF", "XLE", "XLY"]
    assert run_cli(ETF, *BASE, "--tickers", ",".join(first)).code == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE etf_daily_bars")
    fake_yahoo.reset_log()
    assert run_cli(ETF, *BASE).code == 0
    assert {e.symbol for e in fake_yahoo.chart_requests()} == set(ETF_UNIVERSE) - set(first)
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(ETF_UNIVERSE, FIVE_SESSIONS)


def test_the_resume_hint_of_a_run_started_with_uv_run_works_when_typed_back(dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    """A user's shell has the project's commands only through ``uv run``: the hint a stopped run
    prints must be a command that shell finds (it used to say ``etf-backfill ...``: not found)."""
    import shutil
    import subprocess

    from test.fix_yahoo import ROOT, cli_env

    uv = shutil.which("uv")
    assert uv, "uv is not on PATH (the README's commands need it)"
    path = os.pathsep.join([str(Path(uv).parent), "/usr/bin", "/bin"])  # no .venv/bin: what a new shell has
    env = {**cli_env(fake_yahoo, dsn), "PATH": path, "VIRTUAL_ENV": ""}
    fake_yahoo.rate_limit_after = 1
    args = [*BASE, "--tickers", "SPY,XLK", "--no-batch", "--cache-dir", str(tmp_path / "cache")]
    stopped = subprocess.run([uv, "run", "--no-sync", "etf-backfill", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=120)
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    hint = re.search(r"with:\n\s+(uv run etf-backfill .*)$", stopped.stdout, re.M)
    assert hint, stopped.stdout
    fake_yahoo.rate_limit_after = None
    end_cooldown(dsn)
    typed = subprocess.run(["bash", "-c", hint.group(1)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert typed.returncode == 0, typed.stdout + typed.stderr
    assert typed.stderr == ""  # no line that is not the command's own (uv said "Bytecode compiled ..." on every run)
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["SPY", "XLK"], FIVE_SESSIONS)

    # Started from another folder with --project (as the .bat files start it): the hint names the
    # project, and typed back in that folder it continues the run.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fake_yahoo.rate_limit_after = 0
    more = [*BASE, "--tickers", "XLV,XLF", "--no-batch", "--cache-dir", str(tmp_path / "cache")]
    stopped = subprocess.run([uv, "run", "--no-sync", "--project", str(ROOT), "etf-backfill", *more], cwd=elsewhere, env=env,
                             capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    hint = re.search(r"with:\n\s+(uv run .*)$", stopped.stdout, re.M)
    assert hint and hint.group(1).startswith(f"uv run --project {ROOT} etf-backfill "), stopped.stdout
    fake_yahoo.rate_limit_after = None
    end_cooldown(dsn)
    typed = subprocess.run(["bash", "-c", hint.group(1)], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert typed.returncode == 0, typed.stdout + typed.stderr
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["SPY", "XLF", "XLK", "XLV"], FIVE_SESSIONS)


def test_database_is_checked_before_network_for_missing_sessions(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(ETF, *BASE, "--tickers", "SPY").code == 0
    fake_yahoo.reset_log()
    result = run_cli(ETF, "--tickers", "SPY", "--days", "7", "--end", END, "--delay", "0", "--refresh")
    assert result.code == 0
    (req,) = fake_yahoo.chart_requests("SPY")
    first_day = dt.datetime.fromtimestamp(int(req.query["period1"]), dt.UTC).date()
    last_day = dt.datetime.fromtimestamp(int(req.query["period2"]), dt.UTC).date()
    assert (first_day, last_day) == (dt.date(2025, 6, 27), dt.date(2025, 7, 1))  # only 06-27 and 06-30 were missing
    assert "2 new" in result.stdout


@pytest.mark.parametrize("batch", [True, False], ids=["batch", "no-batch"])
def test_rate_limit_stops_at_once_keeps_rows_and_prints_resume(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, batch: bool) -> None:
    fake_yahoo.rate_limit_after = 3
    args = (*BASE, "--rate-limit-sleep", "600") + (() if batch else ("--no-batch",))
    before = time.time()
    result = run_cli(ETF, *args)
    assert result.code == 75, result.stdout + result.stderr
    stored = table_rows(dsn, "etf_daily_bars")
    assert len(stored) == 3 * 5  # the three tickers answered before the 429 are committed
    assert len(fake_yahoo.chart_requests()) == 4  # nothing more after the first 429
    match = re.search(r"Resume after (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", result.stdout)
    assert match, result.stdout
    resume_at = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC).timestamp()
    assert before + 590 <= resume_at <= time.time() + 610
    assert "flows.etf_backfill --days 5 --end 2025-07-08" in result.stdout
    fake_yahoo.rate_limit_after = None
    fake_yahoo.reset_log()
    early = run_cli(ETF, *args)  # the shared budget is cooling down: refused without asking Yahoo
    assert early.code == 75, early.stdout + early.stderr
    assert fake_yahoo.log == []
    assert "cooling down" in early.stdout and "Resume after" in early.stdout
    end_cooldown(dsn)  # as if the advised time had passed
    resumed = run_cli(ETF, *args)
    assert resumed.code == 0, resumed.stderr
    assert len(fake_yahoo.chart_requests()) == 9
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(ETF_UNIVERSE, FIVE_SESSIONS)
    with psycopg.connect(dsn) as conn:
        statuses = [r[0] for r in conn.execute("SELECT status FROM backfill_internal.backfill_runs ORDER BY run_id")]
    assert statuses == ["rate_limited", "rate_limited", "done"]


def test_retry_after_header_extends_the_advised_wait(run_cli: CliRunner, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.rate_limit_after = 0
    fake_yahoo.retry_after = 3600
    result = run_cli(ETF, *BASE, "--rate-limit-sleep", "60", "--no-batch")
    assert result.code == 75
    assert "(in 3600 s)" in result.stdout


def test_transient_5xx_is_retried_until_success(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.scripted["XLK"] = [500, 502, 503]  # yfinance itself re-asks once per attempt
    result = run_cli(ETF, *BASE, "--no-batch", "--max-retries", "3")
    assert result.code == 0, result.stdout + result.stderr
    assert len(fake_yahoo.chart_requests("XLK")) == 4
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(ETF_UNIVERSE, FIVE_SESSIONS)


def test_transient_errors_beyond_max_retries_fail_only_that_ticker(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.scripted["XLV"] = [500] * 20
    result = run_cli(ETF, *BASE, "--max-retries", "1")
    assert result.code == 1
    assert "1 error (XLV: HTTP 500 from source)" in result.stdout
    others = [t for t in ETF_UNIVERSE if t != "XLV"]
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(others, FIVE_SESSIONS)


def test_a_ticker_without_data_is_reported_not_a_failure(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.unknown.add("ZZZZ")
    result = run_cli(ETF, *BASE, "--tickers", "SPY,ZZZZ,XLK", "--no-batch")
    assert result.code == 0, result.stdout + result.stderr
    assert "Prices: 10 new, 0 updated, 0 skipped, 0 errors, 1 no data (ZZZZ)" in result.stdout
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["SPY", "XLK"], FIVE_SESSIONS)
    with psycopg.connect(dsn) as conn:
        item = conn.execute("SELECT status, detail FROM backfill_internal.backfill_run_items WHERE ticker = 'ZZZZ'").fetchone()
        run = conn.execute("SELECT status FROM backfill_internal.backfill_runs").fetchone()
    assert item is not None and item[0] == "no_data" and "unknown or delisted" in item[1]
    assert run == ("done",)

    # A ticker whose history is stored and that now answers nothing: possibly delisted, still no failure.
    fake_yahoo.unknown.add("XLK")
    gone = run_cli(ETF, "--days", "5", "--end", "2025-07-15", "--delay", "0", "--retry-wait", "0.01", "--tickers", "SPY,XLK",
                   "--no-batch")
    assert gone.code == 0, gone.stdout + gone.stderr
    assert "1 no data (XLK possibly delisted)" in gone.stdout

    # Every requested ticker without data: a mistyped --tickers stays loud.
    typo = run_cli(ETF, *BASE, "--tickers", "ZZZZ", "--no-batch")
    assert typo.code == 1 and "no data for any requested ticker" in typo.stdout


def test_corrupt_cache_file_is_refetched_not_a_crash(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    assert run_cli(ETF, *BASE).code == 0
    (victim,) = (tmp_path / "cache" / "prices").glob("*/XLF__*.json")
    victim.write_text(victim.read_text()[:40])
    (other,) = (tmp_path / "cache" / "prices").glob("*/XLE__*.json")
    other.write_bytes(b"\x80\x04\x95pickle?")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE etf_daily_bars")
    fake_yahoo.reset_log()
    result = run_cli(ETF, *BASE)
    assert result.code == 0, result.stderr
    assert {e.symbol for e in fake_yahoo.chart_requests()} == {"XLF", "XLE"}
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(ETF_UNIVERSE, FIVE_SESSIONS)


@pytest.mark.empty_database
def test_dry_run_touches_nothing(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    result = run_cli(ETF, *BASE, "--dry-run")
    assert result.code == 0
    assert "Network: 12 ticker(s); cache: 0; skipped: 0" in result.stdout
    assert fake_yahoo.log == []
    assert not (tmp_path / "cache" / "prices").exists()
    with psycopg.connect(dsn) as conn:  # planned against the schema inside a rolled-back transaction
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


@pytest.mark.empty_database
@pytest.mark.parametrize(
    "args, message",
    [
        (("--tickers", "XLK,'; DROP TABLE x;--"), "invalid ticker"),
        (("--tickers", ""), "no tickers"),
        (("--days", "0"), "--days"),
        (("--days", "abc"), "--days"),
        (("--days", "99999999"), "--days"),
        (("--delay", "-1"), "--delay"),
        (("--timeout", "99999999999999999999"), "--timeout: must be greater than 0 to 3600 seconds"),
        (("--end", "2025-13-01"), "--end"),
        (("--bogus",), "unrecognized arguments"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path,
                                                            args: tuple[str, ...], message: str) -> None:
    result = run_cli(ETF, *args)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.stderr
    assert fake_yahoo.log == []
    with psycopg.connect(dsn) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert tables == (0,)  # not even the migrations ran
    assert not (tmp_path / "cache").exists()


def test_unreachable_database_fails_fast_naming_host_not_password(run_cli: CliRunner) -> None:
    started = time.monotonic()
    result = run_cli(ETF, *BASE, env={"DATABASE_URL": "postgresql://alice:s3cretpw@127.0.0.1:9/prices"})
    assert time.monotonic() - started < 15
    assert result.code == 1
    assert "127.0.0.1:9/prices" in result.stderr
    assert "s3cretpw" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_prefect_run_without_a_configured_server_starts_the_local_server_on_postgres_and_reuses_it(
        run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path, pg_server: tuple[str, Path | None]) -> None:
    env = local_prefect_env(tmp_path / "home", pg_server)
    cli: dict[str, str | None] = {"PREFECT_API_DATABASE_CONNECTION_URL": None, **env}  # not the session server's database
    try:
        first = run_cli(ETF, *BASE, "--tickers", "SPY,XLK", "--orchestrate", "prefect", env=cli, timeout=240)
        assert first.code == 0, first.stderr[-3000:]
        assert "Started the local Prefect server" in first.stderr
        assert "Flow run" in first.stderr and "[2/2]" in first.stderr  # progress lines reach the Prefect run log
        assert "Finished in state Completed" in first.stderr
        pid = json.loads((tmp_path / "home" / "server.json").read_text())["pid"]
        # Behind a proxy (HTTPS_PROXY set, no NO_PROXY: a corporate network), Prefect's websocket to the local
        # server went to the proxy and the run crashed; the command keeps loopback off the proxy itself.
        proxy = fake_yahoo.proxy_url  # a proxy that serves Yahoo only, as a corporate one serves the internet only
        behind_a_proxy: dict[str, str | None] = {**cli, "NO_PROXY": None, "no_proxy": None, "HTTP_PROXY": proxy, "http_proxy": proxy}
        again = run_cli(ETF, *BASE, "--tickers", "SPY,XLK", "--orchestrate", "prefect", env=behind_a_proxy, timeout=240)
        assert again.code == 0, again.stderr[-3000:]
        assert "Started the local Prefect server" not in again.stderr  # found running, not started again
        assert json.loads((tmp_path / "home" / "server.json").read_text())["pid"] == pid
        status = prefect_local("status", env)
        assert status.returncode == 0 and f"running (pid {pid})" in status.stderr
        assert exported(status.stdout)["PREFECT_API_URL"].startswith("http://127.0.0.1:")
    finally:
        stopped = prefect_local("stop", env)
        assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert prefect_local("status", env).returncode == 1  # "not running"
    assert table_rows(dsn, "etf_daily_bars") == expected_rows(["SPY", "XLK"], FIVE_SESSIONS)
    # Prefect kept its runs in PostgreSQL, not in a SQLite file: both flow runs are rows there.
    if "PREFECT_API_DATABASE_CONNECTION_URL" not in env:
        prefect_db = make_conninfo(pg_server[0], dbname="prefect")
        with psycopg.connect(prefect_db) as conn:
            names = [r[0] for r in conn.execute("SELECT f.name FROM flow_run r JOIN flow f ON f.id = r.flow_id")]
        assert names.count("etf-backfill") >= 2
    assert not list((tmp_path / "home").rglob("*.db"))


@pytest.mark.parametrize("url", ["postgresql://alice:s3cr%zzet@127.0.0.1:9/prices", "postgresql://alice:s3cr%zzet@[bad/prices",
                                 "host=127.0.0.1 port=9 password='s3cr%zzet' dbname=prices user=alice"])
def test_no_part_of_a_password_reaches_the_output_even_from_an_unparsable_url(run_cli: CliRunner, url: str) -> None:
    result = run_cli(ETF, *BASE, env={"DATABASE_URL": url})
    assert result.code in (1, 2) and result.stderr.startswith("error:")
    for fragment in ("s3cr", "3cr%", "cr%z", "r%zz", "%zze", "zzet"):
        assert fragment not in result.stderr + result.stdout, result.stderr


def test_an_end_date_in_the_future_is_moved_back_and_said(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    from tasks.core.calendar import last_closed_session

    before = last_closed_session()
    result = run_cli(ETF, "--days", "2", "--end", "2999-01-01", "--tickers", "SPY", "--delay", "0", "--dry-run")
    after = last_closed_session()  # (a session may close while the command runs)
    assert result.code == 0, result.stderr
    note = "Note: --end 2999-01-01 has not closed yet; using the last closed NYSE session, "
    assert f"{note}{before}" in result.stdout or f"{note}{after}" in result.stdout, result.stdout
    weekend = run_cli(ETF, "--days", "2", "--end", "2025-07-05", "--tickers", "SPY", "--delay", "0", "--dry-run")
    assert "Note:" not in weekend.stdout  # a past weekend is simply the session before it


def test_default_flags_pace_yahoo_at_the_source_documents_limits(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(ETF, "--tickers", "SPY,XLK,XLV", "--no-batch", "--days", "5", "--end", END, "--delay", "0",
                     env={"YAHOO_RATE": ""})
    assert result.code == 0, result.stderr
    times = sorted(c.at for c in fake_yahoo.chart_requests())
    assert len(times) == 3
    # 60/min,2000/h: the budget grants a slot every 1.8 s (the binding 2,000 an hour), where 60/min
    # alone would allow one a second. These are arrival times at the server: each request reaches
    # it some milliseconds after its slot, more on a loaded machine (1.725 s apart was seen), so
    # the gap is judged against the midpoint of the two paces, not against 1.8 s exactly.
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 1.4, gaps


def test_a_dry_run_counts_the_requests_the_run_then_makes(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    """Batched, a download still asks Yahoo once per ticker: the estimate counted one request per
    range (3 for 12 ETFs, "at least 10 s") where the run made 14 (in 61 s with the default delay)."""
    plan = run_cli(ETF, *BASE, "--dry-run")
    said = re.search(r"; (\d+) request\(s\) need at least", plan.stdout)
    assert plan.code == 0 and said, plan.stdout
    assert run_cli(ETF, *BASE).code == 0
    assert int(said.group(1)) == len(fake_yahoo.log) == 2 + len(ETF_UNIVERSE)  # cookie, crumb, a chart request each


def test_without_a_terminal_each_ticker_gets_a_line_when_it_starts_and_one_when_it_is_done_and_the_dry_run_s_time_holds(
        run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    import time

    flags = ("--tickers", "XLK,XLV,XLF", "--no-batch", "--days", "5", "--end", END, "--delay", "0.5")
    plan = run_cli(ETF, *flags, "--dry-run")
    requests = 2 + 3  # the cookie and the crumb, then one chart request per ticker
    floor = (requests - 1) * 0.5  # each request after the first waits for --delay (the test budget is faster)
    assert f"{requests} request(s) need at least {floor:.0f} s" in plan.stdout, plan.stdout
    started = time.monotonic()
    result = run_cli(ETF, *flags)
    took = time.monotonic() - started
    assert result.code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    span = f"({FIVE_SESSIONS[0]} to {FIVE_SESSIONS[-1]})"
    for n, ticker in enumerate(["XLK", "XLV", "XLF"], start=1):
        begin = next(i for i, line in enumerate(lines) if line.startswith(f"[{n}/3] {ticker} fetching {span}... ETA "))
        assert lines[begin + 1].startswith(f"[{n}/3] {ticker} fetched"), lines
    # the dry run's least time holds: the run took no less (its --delay spaces every request), and not
    # much more than it plus the run's own work
    assert floor <= took < floor + 30, (floor, took)
    assert len(fake_yahoo.log) == requests, fake_yahoo.log
