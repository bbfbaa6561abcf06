"""End to end: ``backfill --interval 1h .. 1m``, intraday bars from the fake Yahoo's chart endpoint
(Yahoo's windows, its refusals, early closes, DST, pre/post-market) into ``intraday_bars``.

Expected bars come from the hand-written calendar (``test/nyse_days.py``) and the fake's own price
function; the windows are relative to today, as Yahoo's are."""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from test.fake_yahoo import FakeYahoo, intraday_bar_for
from test.fix_yahoo import ROOT, CliRunner, cli_env
from test.nyse_days import NY, closed_trading_days, session_hours, trading_days
from test.prefect_cli import wait_for

CMD = "flows.backfill"
FAST = ("--delay", "0", "--retry-wait", "0.01")
COLUMNS = "ticker, interval, bar_start_at, session_date, regular, open, high, low, close, volume"


def stored(dsn: str, where: str = "TRUE") -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT {COLUMNS} FROM intraday_bars WHERE {where} ORDER BY 1, 2, 3").fetchall()  # noqa: S608


def regular_starts(day: dt.date, minutes: int) -> list[dt.datetime]:
    """The bar starts of a session's regular hours: from the open, every ``minutes``, before the close."""
    open_, close = session_hours(day)
    starts = []
    while open_ < close:
        starts.append(open_)
        open_ += dt.timedelta(minutes=minutes)
    return starts


def expected(ticker: str, interval: str, minutes: int, days: list[dt.date]) -> list[tuple[Any, ...]]:
    rows = []
    for day in days:
        for start in regular_starts(day, minutes):
            b = intraday_bar_for(ticker, int(start.timestamp()), minutes)
            rows.append((ticker, interval, start, day, True, b["open"], b["high"], b["low"], b["close"], b["volume"]))
    return rows


def chart_answers(fake: FakeYahoo) -> list[tuple[str, int, int, int]]:
    """(interval, status, period1, period2) of every chart request the fake answered."""
    return [(e.query.get("interval", ""), e.status, int(e.query.get("period1", 0)), int(e.query.get("period2", 0)))
            for e in fake.chart_requests()]


@pytest.mark.empty_database
def test_5m_bars_of_the_last_sessions_are_stored_as_served_and_a_rerun_asks_for_nothing(run_cli: CliRunner, dsn: str,
                                                                                         fake_yahoo: FakeYahoo) -> None:
    days = closed_trading_days(3)
    result = run_cli(CMD, "--tickers", "AAPL,MSFT", "--interval", "5m", "--days", "3", *FAST, as_process=True)
    assert result.code == 0, result.stdout + result.stderr
    assert stored(dsn) == expected("AAPL", "5m", 5, days) + expected("MSFT", "5m", 5, days)
    assert [(i, s) for i, s, _, _ in chart_answers(fake_yahoo)] == [("5m", 200)] * 2  # one request a ticker
    assert "Bars (5m): " in result.stdout and "0 errors" in result.stdout
    fake_yahoo.reset_log()
    again = run_cli(CMD, "--tickers", "AAPL,MSFT", "--interval", "5m", "--days", "3", *FAST)
    assert again.code == 0, again.stderr
    assert fake_yahoo.chart_requests() == []
    assert again.stdout.count("skipped (all 3 sessions stored)") == 2


def test_1m_bars_are_asked_only_inside_yahoos_window_in_the_fewest_requests_it_accepts(run_cli: CliRunner, dsn: str,
                                                                                        fake_yahoo: FakeYahoo) -> None:
    today = dt.datetime.now(NY).date()
    plan = run_cli(CMD, "--tickers", "AAPL", "--interval", "1m", "--start", str(today - dt.timedelta(days=45)), "--dry-run", *FAST)
    assert plan.code == 0, plan.stderr
    assert "1m bars before " in plan.stdout and "are not served by Yahoo" in plan.stdout
    first = dt.date.fromisoformat(plan.stdout.split("1m bars before ", 1)[1][:10])
    assert today - dt.timedelta(days=30) < first <= today - dt.timedelta(days=27)
    assert fake_yahoo.chart_requests() == []
    result = run_cli(CMD, "--tickers", "AAPL", "--interval", "1m", "--start", str(today - dt.timedelta(days=45)), *FAST)
    assert result.code == 0, result.stdout + result.stderr
    days = [d for d in closed_trading_days(40) if d >= first]
    answers = chart_answers(fake_yahoo)
    assert {s for _, s, _, _ in answers} == {200}  # Yahoo refused nothing
    assert all(p2 - p1 <= 8 * 86400 for _, _, p1, p2 in answers)  # within its 8 days a request
    groups, start = 0, None  # the fewest 7-day spans that cover the sessions (greedy from the first)
    for day in days:
        if start is None or (day - start).days >= 7:
            groups, start = groups + 1, day
    assert len(answers) == groups
    assert f"Network: {groups} request(s) for 1 ticker(s)" in plan.stdout
    assert stored(dsn) == expected("AAPL", "1m", 1, days)


def test_hourly_bars_across_a_dst_change_and_an_early_close(run_cli: CliRunner, dsn: str) -> None:
    result = run_cli(CMD, "--tickers", "SPY", "--interval", "1h", "--start", "2025-10-30", "--end", "2025-11-28", *FAST)
    assert result.code == 0, result.stdout + result.stderr
    days = trading_days(dt.date(2025, 10, 30), dt.date(2025, 11, 28))
    rows = stored(dsn)
    assert rows == expected("SPY", "1h", 60, days)
    first = {r[3]: r[2] for r in reversed(rows)}  # each session's first bar
    assert first[dt.date(2025, 10, 31)] == dt.datetime(2025, 10, 31, 13, 30, tzinfo=dt.UTC)  # 09:30 EDT
    assert first[dt.date(2025, 11, 3)] == dt.datetime(2025, 11, 3, 14, 30, tzinfo=dt.UTC)  # 09:30 EST
    friday = [r[2] for r in rows if r[3] == dt.date(2025, 11, 28)]  # closes at 13:00: 09:30 .. 12:30
    assert friday == [dt.datetime(2025, 11, 28, 14, 30, tzinfo=dt.UTC) + dt.timedelta(hours=k) for k in range(4)]


def test_prepost_adds_the_pre_and_post_market_bars_marked_not_regular(run_cli: CliRunner, dsn: str) -> None:
    (day,) = closed_trading_days(1)
    result = run_cli(CMD, "--tickers", "NVDA", "--interval", "15m", "--start", str(day), "--end", str(day), "--prepost", *FAST)
    assert result.code == 0, result.stdout + result.stderr
    rows = stored(dsn)
    open_, close = session_hours(day)
    pre = dt.datetime.combine(day, dt.time(4, 0), NY).astimezone(dt.UTC)
    want = [pre + dt.timedelta(minutes=15 * k) for k in range(int((close + dt.timedelta(hours=4) - pre).total_seconds() // 900))]
    assert [r[2] for r in rows] == want
    assert [r[2] for r in rows if r[4]] == regular_starts(day, 15)
    assert all(r[5] == intraday_bar_for("NVDA", int(r[2].timestamp()), 15)["open"] for r in rows)


def test_30m_bars_are_yfinances_own_from_15m_ones(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    (day,) = closed_trading_days(1)
    assert run_cli(CMD, "--tickers", "AAPL", "--interval", "30m", "--start", str(day), "--end", str(day), *FAST).code == 0
    assert [i for i, _, _, _ in chart_answers(fake_yahoo)] == ["15m"]  # what yfinance asks Yahoo for
    rows = stored(dsn)
    assert [r[2] for r in rows] == regular_starts(day, 30)
    for row in rows:
        halves = [intraday_bar_for("AAPL", int(row[2].timestamp()) + k * 900, 15) for k in (0, 1)]
        halves = [h for h, start in zip(halves, (row[2], row[2] + dt.timedelta(minutes=15)), strict=True) if start < session_hours(day)[1]]
        assert row[5:] == (halves[0]["open"], max(h["high"] for h in halves), min(h["low"] for h in halves), halves[-1]["close"],
                           sum(h["volume"] for h in halves))


def test_bars_live_in_month_partitions_and_a_months_query_reads_only_its_own(run_cli: CliRunner, dsn: str) -> None:
    assert run_cli(CMD, "--tickers", "SPY", "--interval", "1h", "--start", "2025-10-30", "--end", "2025-11-04", *FAST).code == 0
    with psycopg.connect(dsn) as conn:
        parts = [r[0] for r in conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                            " WHERE i.inhparent = 'intraday_bars'::regclass ORDER BY 1")]
        plan = conn.execute("EXPLAIN (FORMAT JSON) SELECT * FROM intraday_bars WHERE bar_start_at >= '2025-11-01'"
                            " AND bar_start_at < '2025-12-01'").fetchone()
    assert parts == ["intraday_bars_p202510", "intraday_bars_p202511"]
    assert plan is not None
    text = json.dumps(plan[0])
    assert "intraday_bars_p202511" in text and "intraday_bars_p202510" not in text


def test_a_429_stops_with_the_resume_command_and_the_resumed_run_ends_as_a_clean_one(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                                                     fake_yahoo: FakeYahoo) -> None:
    from test.fix_db import fresh_database

    args = ("--tickers", "AAPL,MSFT,NVDA", "--interval", "1h", "--start", "2025-10-01", "--end", "2025-11-28", *FAST)
    fake_yahoo.rate_limit_after = 1
    first = run_cli(CMD, *args, "--rate-limit-sleep", "0")
    assert first.code == 75, first.stdout + first.stderr
    assert "backfill --tickers AAPL,MSFT,NVDA --interval 1h --start 2025-10-01 --end 2025-11-28" in first.stdout
    assert {r[0] for r in stored(dsn)} == {"AAPL"}
    fake_yahoo.rate_limit_after = None
    fake_yahoo.reset_log()
    again = run_cli(CMD, *args)
    assert again.code == 0, again.stdout + again.stderr
    assert {e.symbol for e in fake_yahoo.chart_requests()} == {"MSFT", "NVDA"}  # AAPL's bars were kept
    with fresh_database(pg_server_dsn) as clean:
        assert run_cli(CMD, *args, env={"DATABASE_URL": clean}).code == 0
        assert stored(dsn) == stored(clean)


@pytest.mark.parametrize(("args", "says"), [
    (("--tickers", "AAPL", "--interval", "1d", "--prepost"), "--prepost is for intraday bars"),
    (("--tickers", "AAPL", "--interval", "1d,7m"), "argument --interval: not one of 1d, "),
    (("--interval", "5m", "--tickers", "AAPL,7203.T,SAP.DE"), "not those of 7203.T, SAP.DE: use --interval 1d"),
    (("--tickers", "AAPL", "--interval", "1h", "--start", "2025-07-05", "--end", "2025-07-06"),
     "no closed NYSE session from 2025-07-05 to 2025-07-06"),  # a weekend
])
def test_intraday_flags_that_make_no_sense_are_refused(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, args: tuple[str, ...],
                                                       says: str) -> None:
    result = run_cli(CMD, *args, *([] if "--start" in args else ["--days", "2"]), *FAST)
    assert result.code == 2 and says in result.stderr, result.stderr
    assert fake_yahoo.chart_requests() == []


def test_one_run_collects_daily_and_1m_bars_in_turn(run_cli: CliRunner, dsn: str) -> None:
    days = closed_trading_days(2)
    result = run_cli(CMD, "--tickers", "MSFT", "--interval", "1d,1m", "--days", "2", *FAST)
    assert result.code == 0, result.stdout + result.stderr
    with psycopg.connect(dsn) as conn:
        daily = [r[0] for r in conn.execute("SELECT trade_date FROM stock_daily_bars ORDER BY 1")]
    assert daily == days
    assert stored(dsn) == expected("MSFT", "1m", 1, days)
    assert "Prices: 2 new" in result.stdout and f"Bars (1m): {len(stored(dsn))} new" in result.stdout


def test_the_coverage_report_shows_intraday_sessions_and_the_history_missing_from_the_asked_start(run_cli: CliRunner, dsn: str) -> None:
    days = closed_trading_days(4)
    assert run_cli(CMD, "--tickers", "AAPL", "--interval", "5m", "--start", str(days[2]), "--end", str(days[3]), *FAST).code == 0
    result = run_cli("flows.backfill_status", "--table", "intraday", "--start", str(days[0]), "--end", str(days[3]),
                     "--json")
    assert result.code == 1, result.stderr  # the range asked for is not all there
    (row,) = json.loads(result.stdout)["tickers"]
    assert (row["table"], row["ticker"], row["first"], row["stored"], row["expected"], row["gaps"], row["before_first"]) == (
        "intraday_bars 5m", "AAPL", str(days[2]), 2, 4, [str(d) for d in days[:2]], 2)
    text = run_cli("flows.backfill_status", "--table", "intraday", "--interval", "5m", "--start", str(days[0]))
    assert f"2 of them before its first stored session ({days[2]})" in text.stdout
    assert run_cli("flows.backfill_status", "--table", "stock", "--interval", "5m").code == 2


def test_ctrl_c_mid_request_keeps_every_request_done_and_the_rerun_asks_only_for_the_rest(run_cli: CliRunner, dsn: str,
                                                                                           fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    days = closed_trading_days(10)
    args = ["--tickers", "AAPL,MSFT", "--interval", "1m", "--start", str(days[0]), "--end", str(days[-1]), *FAST,
            "--cache-dir", str(tmp_path / "cache")]
    fake_yahoo.hang_seconds = 20
    fake_yahoo.scripted["MSFT"] = [None, "hang"]  # its second request hangs: the first is stored by then
    proc = subprocess.Popen([sys.executable, "-m", CMD, *args], cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: "MSFT" in fake_yahoo.in_flight, 60, "MSFT's second request")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert f"Continue with:\n  python -m {CMD} {' '.join(args)}" in out  # the command that continues it
    kept = stored(dsn)
    assert {r[0] for r in kept} == {"AAPL", "MSFT"} and len({r[3] for r in kept if r[0] == "MSFT"}) < len(days)
    fake_yahoo.reset_log()
    again = run_cli(CMD, *args)
    assert again.code == 0, again.stdout + again.stderr
    assert {e.symbol for e in fake_yahoo.chart_requests()} == {"MSFT"}  # only what the stop left
    assert stored(dsn) == expected("AAPL", "1m", 1, days) + expected("MSFT", "1m", 1, days)


def test_repair_mends_a_100x_intraday_bar_and_marks_it(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    days = closed_trading_days(2)
    bad = regular_starts(days[1], 5)[30]
    fake_yahoo.intraday_revisions[("AAPL", int(bad.timestamp()))] = 100.0
    result = run_cli(CMD, "--tickers", "AAPL", "--interval", "5m", "--days", "2", "--repair", *FAST)
    assert result.code == 0, result.stdout + result.stderr
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT bar_start_at, close, repaired FROM intraday_bars ORDER BY 1").fetchall()
    want = [(r[2], r[8]) for r in expected("AAPL", "5m", 5, days)]
    assert [(start, close) for start, close, _ in rows] == [(s, pytest.approx(c, rel=1e-6)) for s, c in want]
    assert [start for start, _, repaired in rows if repaired] == [bad]


def test_bars_stored_before_a_split_are_restated_as_yahoo_serves_them_after_it(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                                                  fake_yahoo: FakeYahoo) -> None:
    from test.fix_db import fresh_database

    days = closed_trading_days(6)
    split = days[3]
    first = run_cli(CMD, "--tickers", "AAPL", "--interval", "1h", "--start", str(days[0]), "--end", str(days[2]), *FAST)
    assert first.code == 0, first.stdout + first.stderr
    with psycopg.connect(dsn, autocommit=True) as conn:  # that run was days ago, before the split
        conn.execute("UPDATE intraday_bars SET fetched_at = %s", (dt.datetime.combine(days[0], dt.time(20), NY),))
    fake_yahoo.splits["AAPL"] = {split: (4, 1)}  # a 4-for-1 split: Yahoo now serves earlier bars divided by 4
    args = ("--tickers", "AAPL", "--interval", "1h", "--start", str(days[0]), "--end", str(days[5]), *FAST)
    fake_yahoo.reset_log()
    result = run_cli(CMD, *args)
    assert result.code == 0, result.stdout + result.stderr
    assert len(fake_yahoo.chart_requests()) == 1  # only the sessions not stored were asked for
    with fresh_database(pg_server_dsn) as clean:  # what one run after the split stores
        assert run_cli(CMD, *args, env={"DATABASE_URL": clean}).code == 0
        want = stored(clean)
    got = stored(dsn)
    assert [r[:5] for r in got] == [r[:5] for r in want]
    assert [r[5:] for r in got] == [tuple(pytest.approx(v, rel=1e-6) for v in r[5:]) for r in want]
    before = [r for r in got if r[3] < split]
    assert before and all(r[8] == pytest.approx(intraday_bar_for("AAPL", int(r[2].timestamp()), 60)["close"] / 4, rel=1e-6)
                          for r in before)
    with psycopg.connect(dsn) as conn:
        restated = conn.execute("SELECT ex_date, ratio, bars FROM backfill_internal.intraday_split_restatements").fetchall()
        assert restated == [(split, 4.0, len(before))]
    again = run_cli(CMD, *args)  # applied once: a rerun restates nothing again
    assert again.code == 0 and stored(dsn) == got
