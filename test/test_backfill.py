"""End to end: ``backfill``, the user's own tickers or universe over any range (in the test process as
its subprocess would run it, once as its own process), real yfinance → fake Yahoo, real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import shlex
from pathlib import Path

import psycopg
import pytest

from tasks.sources.ssga import yahoo_symbol
from test.fake_yahoo import SECTOR_FUNDS, FakeYahoo, bar_for, constituents_for
from test.fix_db import table_rows
from test.fix_yahoo import CliRunner
from test.nyse_days import trading_days
from test.test_etf_backfill import expected_rows

CMD = "flows.backfill"
FAST = ("--delay", "0", "--retry-wait", "0.01")
STOCK = "stock_daily_bars"
ETF = "etf_daily_bars"


def expected(tickers: list[str], days: list[dt.date]) -> list[tuple[object, ...]]:
    return expected_rows(tickers, days)


def holdings(fund: str) -> list[str]:
    """The fund's stocks as the fake sponsor file lists them, in Yahoo's spelling."""
    return [yahoo_symbol(name) for name, *_ in constituents_for(fund)]


@pytest.mark.empty_database
def test_named_tickers_from_a_start_date_to_an_end_date_land_in_stock_history(run_cli: CliRunner, dsn: str,
                                                                              fake_yahoo: FakeYahoo) -> None:
    result = run_cli(CMD, "--tickers", "AAPL,msft", "--start", "2025-06-26", "--end", "2025-07-08", *FAST, as_process=True)
    assert result.code == 0, result.stderr
    days = trading_days(dt.date(2025, 6, 26), dt.date(2025, 7, 8))  # July 4th is not among them
    assert table_rows(dsn, STOCK) == expected(["AAPL", "MSFT"], days)
    assert table_rows(dsn, ETF) == []
    assert f"Prices: {2 * len(days)} new, 0 updated, 0 skipped, 0 errors" in result.stdout
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT flow, status FROM backfill_internal.backfill_runs").fetchall() == [("backfill", "done")]


def test_a_wider_range_later_fetches_only_the_sessions_not_stored(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(CMD, "--tickers", "AAPL", "--start", "2025-07-01", "--end", "2025-07-08", *FAST).code == 0
    fake_yahoo.reset_log()
    again = run_cli(CMD, "--tickers", "AAPL", "--start", "2025-06-23", "--end", "2025-07-08", "--refresh", *FAST)
    assert again.code == 0, again.stderr
    (request,) = fake_yahoo.chart_requests("AAPL")
    asked = dt.datetime.fromtimestamp(int(request.query["period2"]), dt.UTC).date()
    assert asked <= dt.date(2025, 7, 1)  # what was stored is not asked for again
    assert table_rows(dsn, STOCK) == expected(["AAPL"], trading_days(dt.date(2025, 6, 23), dt.date(2025, 7, 8)))


def test_days_counts_sessions_back_from_the_end_and_table_etf_writes_the_etf_table(run_cli: CliRunner, dsn: str) -> None:
    result = run_cli(CMD, "--tickers", "XLK", "--days", "3", "--end", "2025-07-07", "--table", "etf", *FAST)
    assert result.code == 0, result.stderr
    assert table_rows(dsn, ETF) == expected(["XLK"], [dt.date(2025, 7, 2), dt.date(2025, 7, 3), dt.date(2025, 7, 7)])
    assert table_rows(dsn, STOCK) == []


def test_a_universe_file_of_lines_or_a_csv_with_a_ticker_column(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    lines = tmp_path / "watchlist.txt"
    lines.write_text("# my watchlist\nAAPL\n\nmsft  # software\nAAPL\n", encoding="utf-8")
    table = tmp_path / "watchlist.csv"
    table.write_text("name,Ticker,weight\nNvidia,NVDA,0.5\nAlphabet,GOOGL,0.5\n", encoding="utf-8")
    days = trading_days(dt.date(2025, 7, 7), dt.date(2025, 7, 8))
    for path in (lines, table):
        result = run_cli(CMD, "--universe", str(path), "--start", "2025-07-07", "--end", "2025-07-08", *FAST)
        assert result.code == 0, result.stderr
    assert table_rows(dsn, STOCK) == expected(["AAPL", "MSFT", "NVDA", "GOOGL"], days)


def test_spdr_and_sp500_universes_are_the_funds_holdings(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(CMD, "--universe", "spdr:xlk", "--days", "2", "--end", "2025-07-08", *FAST)
    assert result.code == 0, result.stderr
    assert {r[0] for r in table_rows(dsn, STOCK)} == set(holdings("XLK"))
    union = {t for fund in SECTOR_FUNDS for t in holdings(fund)}
    plan = run_cli(CMD, "--universe", "sp500", "--days", "2", "--end", "2025-07-08", "--dry-run", *FAST)
    assert plan.code == 0, plan.stderr
    assert f"Network: {len(union - set(holdings('XLK')))} ticker(s); cache: 0; skipped: {len(holdings('XLK'))}" in plan.stdout
    assert "BRK-B" in plan.stdout  # the sponsor's BRK.B, as Yahoo spells it


@pytest.mark.parametrize(("args", "says"), [
    (("--tickers", "AAPL", "--universe", "sp500", "--days", "2"), "one of them"),
    (("--days", "2"), "--tickers A,B or --universe"),
    (("--tickers", "AAPL"), "--start YYYY-MM-DD or --days N"),
    (("--tickers", "AAPL", "--start", "2025-07-01", "--days", "2"), "--start YYYY-MM-DD or --days N"),
    (("--tickers", "AAPL", "--start", "2025-07-05", "--end", "2025-07-06"), "no NYSE session from 2025-07-05 to 2025-07-06"),
    (("--universe", "spdr:SPY", "--days", "2"), "not a Select Sector SPDR fund"),
    (("--universe", "missing.txt", "--days", "2"), "missing.txt: no such file"),
    (("--tickers", "AAPL", "--days", "2", "--interval", "7m"), "not one of 1d, 1wk, 1mo, 1h, 90m"),
    (("--tickers", "AAPL", "--tickers", "MSFT", "--days", "2"), "argument --tickers: given twice; give one comma-separated list"),
    (("--tickrs", "AAPL", "--days", "2"), "backfill: unrecognized arguments: --tickrs AAPL; did you mean --tickers? (backfill --help"),
])
def test_what_cannot_be_planned_is_refused_with_exit_2_and_nothing_written(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                                             args: tuple[str, ...], says: str) -> None:
    result = run_cli(CMD, *args, *FAST)
    assert result.code == 2, result.stdout + result.stderr
    assert says in result.stderr
    assert fake_yahoo.chart_requests() == []
    assert table_rows(dsn, STOCK) == []


def test_a_bad_line_in_a_universe_file_is_named(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("AAPL\nnot a ticker!\n", encoding="utf-8")
    result = run_cli(CMD, "--universe", str(path), "--days", "2", *FAST)
    assert result.code == 2
    assert f"--universe {path}, line 2: invalid ticker 'not a ticker!'" in result.stderr


def test_a_429_stops_with_exit_75_and_the_command_that_resumes(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.rate_limit_after = 1
    args = ("--tickers", "AAPL,MSFT,NVDA", "--start", "2025-07-01", "--end", "2025-07-08", "--no-batch", *FAST)
    result = run_cli(CMD, *args)
    assert result.code == 75, result.stdout + result.stderr
    assert "backfill --tickers AAPL,MSFT,NVDA --start 2025-07-01 --end 2025-07-08 --no-batch" in result.stdout
    assert {r[0] for r in table_rows(dsn, STOCK)} == {"AAPL"}  # what arrived before the 429 is kept


def test_a_shard_takes_its_share_of_the_tickers_by_a_stable_hash(run_cli: CliRunner, dsn: str) -> None:
    import zlib

    tickers = ["IBM", "ORCL", "CSCO", "INTC", "QCOM", "TXN"]
    for k in (1, 2):
        result = run_cli(CMD, "--tickers", ",".join(tickers), "--days", "2", "--end", "2025-07-08", "--shard", f"{k}/2", *FAST)
        assert result.code == 0, result.stderr
        mine = {t for t in tickers if zlib.crc32(t.encode()) % 2 == k - 1}  # an independent split
        assert {r[0] for r in table_rows(dsn, STOCK)} == (mine if k == 1 else set(tickers))


def test_repair_mends_a_100x_bar_and_marks_it(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    bad = dt.date(2025, 2, 3)
    fake_yahoo.revisions[("AAPL", bad)] = 100.0  # a unit mix-up at the source: one session in cents
    days = trading_days(dt.date(2025, 1, 2), dt.date(2025, 2, 28))
    result = run_cli(CMD, "--tickers", "AAPL", "--start", "2025-01-02", "--end", "2025-02-28", "--repair", *FAST)
    assert result.code == 0, result.stdout + result.stderr
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT trade_date, close, repaired FROM stock_daily_bars ORDER BY 1").fetchall()
    assert rows == [(d, pytest.approx(bar_for("AAPL", d)["close"], rel=1e-6), d == bad) for d in days]
    plain = run_cli(CMD, "--tickers", "MSFT", "--start", "2025-01-02", "--end", "2025-01-10", *FAST)  # without: nothing marked
    assert plain.code == 0
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT bool_or(repaired) FROM stock_daily_bars WHERE ticker = 'MSFT'").fetchone() == (False,)


def test_resume_continues_the_stopped_run_with_its_own_flags(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                             fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    """Also when the stopped run was started from another folder through ``uv run --project DIR``
    (as the .bat files start it): its recorded command has the project's flag before its own."""
    from test.fix_db import fresh_database
    from test.fix_yahoo import ROOT

    args = ("--tickers", "AAPL,MSFT,NVDA", "--start", "2025-06-02", "--end", "2025-07-08", "--no-batch", *FAST)
    fake_yahoo.rate_limit_after = 1
    stopped = run_cli(CMD, *args, "--rate-limit-sleep", "0", env={"UV_RUN_RECURSION_DEPTH": "1"}, cwd=tmp_path)
    assert stopped.code == 75
    hint = f"  uv run --project {shlex.quote(str(ROOT))} python -m flows.backfill --tickers AAPL,MSFT,NVDA --start 2025-06-02"
    assert hint in stopped.stdout, stopped.stdout
    fake_yahoo.rate_limit_after = None
    assert run_cli(CMD, "--resume", "--tickers", "AAPL").code == 2  # its own flags, not others
    resumed = run_cli(CMD, "--resume")
    assert resumed.code == 0, resumed.stdout + resumed.stderr
    assert "Resuming backfill run 1 (rate_limited): " in resumed.stdout
    with fresh_database(pg_server_dsn) as clean:
        assert run_cli(CMD, *args, env={"DATABASE_URL": clean}).code == 0
        assert table_rows(dsn, STOCK) == table_rows(clean, STOCK)
    done = run_cli(CMD, "--resume")
    assert done.code == 2 and "nothing to resume: the last backfill finished" in done.stderr


def test_weekly_and_monthly_bars_are_views_of_the_daily_ones(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    result = run_cli(CMD, "--tickers", "AAPL", "--interval", "1wk,1mo", "--start", "2025-06-02", "--end", "2025-07-08", *FAST)
    assert result.code == 0, result.stderr
    assert len(fake_yahoo.chart_requests()) == 1  # one daily fetch serves both
    days = trading_days(dt.date(2025, 6, 2), dt.date(2025, 7, 8))
    for view, key in (("stock_weekly_bars", lambda d: d - dt.timedelta(days=d.weekday())),
                      ("stock_monthly_bars", lambda d: d.replace(day=1))):
        groups: dict[dt.date, list[dt.date]] = {}
        for d in days:
            groups.setdefault(key(d), []).append(d)
        want = []
        for start, members in sorted(groups.items()):
            bars = [bar_for("AAPL", d) for d in members]
            want.append(("AAPL", start, members[0], members[-1], bars[0]["open"], max(b["high"] for b in bars),
                         min(b["low"] for b in bars), bars[-1]["close"], bars[-1]["adj_close"], sum(b["volume"] for b in bars),
                         len(members)))
        with psycopg.connect(dsn) as conn:
            got = conn.execute(f"SELECT * FROM {view} ORDER BY 2").fetchall()  # noqa: S608 (our own view names)
        assert got == want, view


def test_ctrl_c_in_a_batched_download_keeps_the_chunks_stored_before_it(dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from tasks.prices.backfill_run import BATCH_CHUNK
    from test.fix_yahoo import ROOT, cli_env
    from test.prefect_cli import wait_for

    tickers = [f"T{chr(65 + k // 26)}{chr(65 + k % 26)}" for k in range(BATCH_CHUNK + 5)]
    fake_yahoo.hang_seconds = 20
    fake_yahoo.scripted[tickers[BATCH_CHUNK + 2]] = ["hang"]  # in the second chunk
    args = ["--tickers", ",".join(tickers), "--days", "2", "--end", "2025-07-08", *FAST, "--cache-dir", str(tmp_path / "cache")]
    proc = subprocess.Popen([sys.executable, "-m", CMD, *args], cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: tickers[BATCH_CHUNK + 2] in fake_yahoo.in_flight, 60, "the hanging request")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert {r[0] for r in table_rows(dsn, STOCK)} == set(tickers[:BATCH_CHUNK])  # the first chunk, stored before the stop
    assert "Continue with:\n  python -m flows.backfill --tickers " in out
