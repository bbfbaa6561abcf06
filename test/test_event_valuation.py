"""End to end: event import and valuation against the fake Yahoo and the embedded PostgreSQL."""

from __future__ import annotations

import datetime as dt
import math
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import exchange_calendars as xcals
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from test.fake_yahoo import FakeYahoo, bar_for
from test.fix_db import end_cooldown
from test.fix_yahoo import ROOT, CliRunner, cli_env, kill_9_leaving_no_orphans

VAL = "flows.event_valuation"
FAST = ("--delay", "0", "--retry-wait", "0.01")
CAL = xcals.get_calendar("XNYS", start="2020-01-01")
METRICS = ("base_date", "price_at_event", "ret_1d", "ret_5d", "ret_20d", "excess_ret_1d", "excess_ret_5d", "excess_ret_20d",
           "momentum_20d", "volatility_20d", "volume_ratio", "reaction", "trend", "valuation_status")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def write_csv(path: Path, rows: list[tuple[str, str, str]], header: str = "ticker,event_time,source") -> Path:
    path.write_text(header + "\n" + "".join(f"{t},{e},{s}\n" for t, e, s in rows), encoding="utf-8")
    return path


def expected(ticker: str, event_time: dt.datetime, as_of: dt.date, fake: FakeYahoo | None = None) -> dict[str, Any]:
    """The metrics computed the slow, obvious way from the fake's prices and the calendar."""
    sessions = [s.date() for s in CAL.sessions_in_range("2024-06-01", pd.Timestamp(as_of))]
    closes = [CAL.session_close(pd.Timestamp(d)).to_pydatetime() for d in sessions]
    base = max(i for i, c in enumerate(closes) if c <= event_time)
    price = fake.bar if fake is not None else bar_for
    bar = [price(ticker, d) for d in sessions]
    spy = [price("SPY", d) for d in sessions]
    adj = [b["adj_close"] for b in bar]
    out: dict[str, Any] = {"base_date": sessions[base], "price_at_event": bar[base]["close"], "valuation_status": "ok"}
    for k in (1, 5, 20):
        if base + k < len(sessions):
            ret = adj[base + k] / adj[base] - 1
            out[f"ret_{k}d"] = ret
            out[f"excess_ret_{k}d"] = ret - (spy[base + k]["adj_close"] / spy[base]["adj_close"] - 1)
        else:
            out[f"ret_{k}d"] = out[f"excess_ret_{k}d"] = None
    out["momentum_20d"] = adj[base] / adj[base - 20] - 1
    logs = [math.log(adj[i] / adj[i - 1]) for i in range(base - 19, base + 1)]
    out["volatility_20d"] = statistics.stdev(logs) * math.sqrt(252)
    mean_vol = sum(b["volume"] for b in bar[base - 19 : base + 1]) / 20
    out["volume_ratio"] = bar[base + 1]["volume"] / mean_vol if base + 1 < len(sessions) else None
    sigma = out["volatility_20d"] / math.sqrt(252)
    ex1 = out["excess_ret_1d"]
    out["reaction"] = None if ex1 is None else ("positive" if ex1 > sigma else "negative" if ex1 < -sigma else "neutral")
    mom = out["momentum_20d"]
    out["trend"] = "up" if mom > 0.05 else "down" if mom < -0.05 else "flat"
    return out


def stored(dsn: str, where: str = "TRUE") -> dict[tuple[str, dt.datetime], dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(f"SELECT ticker, event_at, {', '.join(METRICS)} FROM events WHERE {where}")  # noqa: S608
        return {(r[0], r[1]): dict(zip(METRICS, r[2:], strict=True)) for r in cur}


def assert_matches(actual: dict[str, Any], wanted: dict[str, Any]) -> None:
    for key, value in wanted.items():
        if isinstance(value, float):
            assert actual[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
        else:
            assert actual[key] == value, key


EVENTS = {
    "before the open": "2025-07-03 12:00:00+00:00",
    "after the early close": "2025-07-03 17:30:00+00:00",
    "on a holiday": "2025-07-04 15:00:00+00:00",
    "just after the close": "2025-07-07 20:00:01+00:00",
    "during a session": "2025-06-02 13:35:00+00:00",
    "forward bars missing": "2025-07-28 14:00:00+00:00",
}


@pytest.mark.empty_database
def test_metrics_match_an_independent_computation_and_fill_in_later(run_cli: CliRunner, dsn: str, tmp_path: Path,
                                                                    fake_yahoo: FakeYahoo) -> None:
    csv = write_csv(tmp_path / "e.csv", [("KNWN", t, label) for label, t in EVENTS.items()])
    first = run_cli(VAL, "--import-csv", str(csv), *FAST, "--end", "2025-07-31", as_process=True)  # its own process, once
    assert first.code == 0, first.stdout + first.stderr
    rows = stored(dsn)
    for text in EVENTS.values():
        assert_matches(rows[("KNWN", utc(text))], expected("KNWN", utc(text), dt.date(2025, 7, 31)))
    late = rows[("KNWN", utc(EVENTS["forward bars missing"]))]
    assert late["ret_20d"] is None and late["ret_1d"] is not None
    assert rows[("KNWN", utc(EVENTS["before the open"]))]["base_date"] == dt.date(2025, 7, 2)
    assert rows[("KNWN", utc(EVENTS["on a holiday"]))]["base_date"] == dt.date(2025, 7, 3)
    assert rows[("KNWN", utc(EVENTS["after the early close"]))]["base_date"] == dt.date(2025, 7, 3)

    fake_yahoo.reset_log()
    later = run_cli(VAL, *FAST, "--end", "2025-09-30")
    assert later.code == 0, later.stderr
    incomplete = [t for t in EVENTS.values() if expected("KNWN", utc(t), dt.date(2025, 7, 31))["ret_20d"] is None]
    assert len(incomplete) == 4
    assert f"Valuing {len(incomplete)} events" in later.stdout  # only events whose forward bars were missing
    rows = stored(dsn)
    for text in EVENTS.values():
        assert_matches(rows[("KNWN", utc(text))], expected("KNWN", utc(text), dt.date(2025, 9, 30)))


def test_spawned_worker_processes_value_as_the_independent_computation_does(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    """``spawn`` (Windows' only start method) on Linux: the workers import everything again and get
    their context pickled; what they store is what the forked ones store (the test above)."""
    tickers = [f"SPW{i}" for i in range(6)]
    csv = write_csv(tmp_path / "e.csv", [(t, text, "s") for t in tickers for text in list(EVENTS.values())[:3]])
    spawned = run_cli(VAL, "--import-csv", str(csv), *FAST, "--end", "2025-07-31", "--processes", "2", "--concurrency", "2",
                      "--group-size", "1", env={"BACKFILL_START_METHOD": "spawn"})
    assert spawned.code == 0, spawned.stdout + spawned.stderr
    assert "in 2 worker processes (spawn)" in spawned.stdout
    rows = stored(dsn)
    assert len(rows) == len(tickers) * 3
    for ticker in tickers:
        for text in list(EVENTS.values())[:3]:
            assert_matches(rows[(ticker, utc(text))], expected(ticker, utc(text), dt.date(2025, 7, 31)))
    bad = run_cli(VAL, *FAST, env={"BACKFILL_START_METHOD": "thread"})
    assert bad.code == 2 and "start method 'thread' is not available here" in bad.stderr, bad.stderr


def test_an_event_after_the_last_usable_session_waits_for_its_base_bar(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    """Data up to Thursday 2025-07-31: an event after Thursday's close has Thursday as its base; one
    after Friday's close (or in 2199) has a base session no bar exists for yet: it waits, unvalued,
    instead of being valued against the last bar and flipping later."""
    events = {"after thursday's close": "2025-07-31 20:30:00+00:00", "after friday's close": "2025-08-01 20:30:00+00:00",
              "far future": "2199-12-30 15:00:00+00:00"}
    csv = write_csv(tmp_path / "e.csv", [("KNWN", t, label) for label, t in events.items()])
    for _ in range(2):  # a second run changes nothing
        run = run_cli(VAL, "--import-csv", str(csv), *FAST, "--end", "2025-07-31")
        assert run.code == 0, run.stdout + run.stderr
        assert "2 event(s) at or after 2025-08-01 20:00 UTC wait: their base session comes after 2025-07-31" in run.stdout
        rows = stored(dsn)
        thursday = rows[("KNWN", utc(events["after thursday's close"]))]
        assert thursday["base_date"] == dt.date(2025, 7, 31)
        assert_matches(thursday, expected("KNWN", utc(events["after thursday's close"]), dt.date(2025, 7, 31)))
        for label in ("after friday's close", "far future"):
            assert rows[("KNWN", utc(events[label]))]["valuation_status"] == "pending", label
            assert rows[("KNWN", utc(events[label]))]["base_date"] is None, label
    later = run_cli(VAL, *FAST, "--end", "2025-08-29")  # Friday's bar exists now: that event is valued
    assert later.code == 0, later.stderr
    friday = stored(dsn)[("KNWN", utc(events["after friday's close"]))]
    assert_matches(friday, expected("KNWN", utc(events["after friday's close"]), dt.date(2025, 8, 29)))


def test_events_are_revalued_when_stored_prices_change(run_cli: CliRunner, dsn: str, tmp_path: Path, fake_yahoo: FakeYahoo) -> None:
    when = "2025-03-05 15:00:00+00:00"
    csv = write_csv(tmp_path / "e.csv", [("RVAL", when, "s")])
    assert run_cli(VAL, "--import-csv", str(csv), *FAST, "--end", "2025-06-30").code == 0
    before = stored(dsn)[("RVAL", utc(when))]
    assert_matches(before, expected("RVAL", utc(when), dt.date(2025, 6, 30)))
    again = run_cli(VAL, *FAST, "--end", "2025-06-30")
    assert "Nothing to value" in again.stdout  # unchanged prices: nothing pending
    # SPY pays a dividend inside the event's 20-session window; a later SPY backfill sees it and
    # restates SPY's stored adjusted history, which changes the event's excess returns.
    fake_yahoo.dividends["SPY"] = {dt.date(2025, 3, 20): 2.5}
    stag = run_cli("flows.staggered_sector_backfill", "--tickers", "SPY", "--days", "5", "--end", "2025-03-21",
                   "--delay", "0m", cache_dir=tmp_path / "a-day-later")
    assert stag.code == 0, stag.stdout + stag.stderr
    revalue = run_cli(VAL, *FAST, "--end", "2025-06-30")
    assert revalue.code == 0 and "Valuing 1 events" in revalue.stdout, revalue.stdout
    after = stored(dsn)[("RVAL", utc(when))]
    assert after["excess_ret_20d"] != pytest.approx(before["excess_ret_20d"])
    assert_matches(after, expected("RVAL", utc(when), dt.date(2025, 6, 30), fake_yahoo))


def test_one_fetch_per_ticker_whatever_its_event_count(run_cli: CliRunner, dsn: str, tmp_path: Path, fake_yahoo: FakeYahoo) -> None:
    times = [f"2025-{m:02d}-{d:02d} 15:00:00+00:00" for m in (2, 3, 4) for d in (3, 10, 17, 24)]
    rows = [("MANY", t, f"s{i}") for i, t in enumerate(times)] + [("ONE", "2025-03-05 15:00:00+00:00", "x")]
    csv = write_csv(tmp_path / "e.csv", rows)
    result = run_cli(VAL, "--import-csv", str(csv), *FAST, "--end", "2025-06-30", "--group-size", "1", "--concurrency", "2")
    assert result.code == 0, result.stderr
    assert len(fake_yahoo.chart_requests("MANY")) == 1
    assert len(fake_yahoo.chart_requests("ONE")) == 1
    assert len(fake_yahoo.chart_requests("SPY")) == 1
    assert all(r["valuation_status"] == "ok" for r in stored(dsn).values())


def test_rerun_and_overwrite_need_no_network(run_cli: CliRunner, dsn: str, tmp_path: Path, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.unknown.add("GONE")
    csv = write_csv(tmp_path / "e.csv", [("AAA", "2025-03-05 15:00:00+00:00", "a"), ("BBB", "2025-04-07 15:00:00+00:00", "b"),
                                         ("GONE", "2025-04-07 15:00:00+00:00", "c")])
    assert run_cli(VAL, "--import-csv", str(csv), *FAST, "--end", "2025-06-30").code == 0
    before = stored(dsn)
    fake_yahoo.reset_log()
    again = run_cli(VAL, *FAST, "--end", "2025-06-30")
    assert again.code == 0 and "Nothing to value" in again.stdout
    with psycopg.connect(dsn, autocommit=True) as conn:
        # base is 03-04
        conn.execute("UPDATE stock_daily_bars SET adj_close = adj_close * 2"
                     " WHERE ticker = 'AAA' AND trade_date >= '2025-03-05'")
    over = run_cli(VAL, "--overwrite", *FAST, "--end", "2025-06-30")
    assert over.code == 0, over.stderr
    assert fake_yahoo.log == []
    after = stored(dsn)
    key = ("AAA", utc("2025-03-05 15:00:00+00:00"))
    assert after[key]["ret_1d"] == pytest.approx((1 + before[key]["ret_1d"]) * 2 - 1)
    assert after[("BBB", utc("2025-04-07 15:00:00+00:00"))] == before[("BBB", utc("2025-04-07 15:00:00+00:00"))]
    assert after[("GONE", utc("2025-04-07 15:00:00+00:00"))]["valuation_status"] == "no_data"


@pytest.mark.empty_database
def test_import_rejects_bad_file_whole_listing_every_bad_line(run_cli: CliRunner, dsn: str, tmp_path: Path, fake_yahoo: FakeYahoo) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(
        "ticker,event_time,source\n"
        "AAPL,2025-03-05 15:00:00+00:00,ok\n"
        "BAD TICKER,2025-03-05 15:00:00+00:00,x\n"
        "MSFT,2025-03-05 15:00:00,no offset\n"
        "MSFT,yesterday,x\n"
        "NVDA,2025-03-05 15:00:00+00:00\n"
        "AMZN,2025-03-06 15:00:00+00:00,ok\n",
        encoding="utf-8",
    )
    result = run_cli(VAL, "--import-csv", str(csv), *FAST)
    assert result.code == 2
    err = result.stderr
    for line, reason in ((3, "bad ticker"), (4, "bad event_time"), (5, "bad event_time"), (6, "wrong number of fields")):
        assert f"line {line}: {reason}" in err, err
    assert "(time has no UTC offset)" in err
    assert "line 2" not in err and "line 7" not in err
    assert fake_yahoo.log == []
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'events'").fetchone() == (0,)

    skipped = run_cli(VAL, "--import-csv", str(csv), "--skip-bad-rows", "--import-only")
    assert skipped.code == 1
    assert "Imported 2 new event(s)" in skipped.stdout and "line 3: bad ticker" in skipped.stdout
    again = run_cli(VAL, "--import-csv", str(csv), "--skip-bad-rows", "--import-only")
    assert "Imported 0 new event(s)" in again.stdout and "(2 already present)" in again.stdout
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT ticker FROM events ORDER BY ticker").fetchall() == [("AAPL",), ("AMZN",)]


@pytest.mark.parametrize("content, message", [
    (b"ticker,when,source\nAAPL,2025-01-01T00:00Z,x\n", "missing column(s) event_time"),
    (b"ticker,event_time,source\nAAPL,2025-01-01T00:00Z,\xff\xfe\n", "not UTF-8"),
    (b"", "empty"),
    # an unterminated quote used to swallow the rows after it ("Imported 1", exit 0)
    (b'ticker,event_time,source\nAAPL,2025-01-02T15:00:00Z,"news\nMSFT,2025-01-02T15:00:00Z,a\nAMZN,2025-01-02T15:00:00Z,b\n',
     "malformed CSV at line 2:"),
    (b'ticker,event_time,source\nAAPL,2025-01-02T15:00:00Z,news\nMSFT,2025-01-02T15:00:00Z,"ne"ws\n', "malformed CSV at line 3:"),
    (b"ticker,event_time,source,source\nAAPL,2025-01-02T15:00:00Z,a,b\n", "appear more than once"),
    # any readable file (a password file, say): its first line is never shown, only counted
    (b"root:$6$s3cr3thash:19000:0:99999:7:::\n", "missing column(s) ticker, event_time, source in its first line: found none"
                                                 " of them and 1 other column(s), not shown"),
    (b"ticker,token=s3cr3thash\n", "missing column(s) event_time, source in its first line: found ticker and 1 other"),
])
def test_import_rejects_unusable_files(run_cli: CliRunner, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    result = run_cli(VAL, "--import-csv", str(path))
    assert result.code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "s3cr3t" not in result.stderr.lower()


@pytest.mark.empty_database
@pytest.mark.parametrize("as_of", ["1979-12-31", "0001-01-01"])
def test_an_as_of_date_outside_the_calendar_is_refused_before_the_import_writes(run_cli: CliRunner, dsn: str, tmp_path: Path,
                                                                                as_of: str) -> None:
    csv = write_csv(tmp_path / "ev.csv", [("AAPL", "2025-01-02 15:00:00+00:00", "news")])
    result = run_cli(VAL, "--end", as_of, "--import-csv", str(csv))
    assert result.code == 2
    said = f"error: argument --end: must be a date from 1980-01-02 (the NYSE calendar's first session) on: '{as_of}'"
    assert result.stderr.strip() == said
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT to_regclass('events')").fetchone() == (None,)


@pytest.mark.parametrize("time, reason", [
    ("0001-01-01T00:00:00+14:00", "out of range"), ("9999-12-31T23:59:59-14:00", "out of range"),
    ("1850-06-01T00:00:00+00:00", "out of range"), ("2025-01-02T15:00:00+16:00", "offset"),
])
def test_impossible_event_times_are_refused_at_import_with_their_line(run_cli: CliRunner, dsn: str, tmp_path: Path, time: str,
                                                                      reason: str) -> None:
    csv = write_csv(tmp_path / "e.csv", [("AAPL", "2025-01-02 15:00:00+00:00", "ok"), ("AAPL", time, "x")])
    result = run_cli(VAL, "--import-csv", str(csv), "--import-only")
    assert result.code == 2 and "line 3" in result.stderr and reason in result.stderr, result.stderr
    skipped = run_cli(VAL, "--import-csv", str(csv), "--import-only", "--skip-bad-rows")
    assert skipped.code == 1 and "Imported 1 new event(s)" in skipped.stdout
    assert run_cli(VAL, "--dry-run", "--end", "2025-06-30").code == 0  # later runs are not blocked


def test_excel_bom_and_nul_bytes_in_the_events_csv(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfticker,event_time,source\r\nAAPL,2025-01-02T15:00:00Z,excel\r\n")
    assert run_cli(VAL, "--import-csv", str(bom), "--import-only").code == 0
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"ticker,event_time,source\nMSFT,2025-01-02T15:00:00Z,a\x00b\nAMZN,2025-01-02T15:00:00Z,c\n")
    refused = run_cli(VAL, "--import-csv", str(nul), "--import-only")
    assert refused.code == 2 and "line 2: NUL byte" in refused.stderr, refused.stderr
    assert run_cli(VAL, "--import-csv", str(nul), "--import-only", "--skip-bad-rows").code == 1
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT ticker, source FROM events ORDER BY 1").fetchall() == [("AAPL", "excel"), ("AMZN", "c")]


@pytest.mark.empty_database
def test_dry_run_counts_and_writes_nothing(run_cli: CliRunner, dsn: str, tmp_path: Path, fake_yahoo: FakeYahoo) -> None:
    rows = [(t, f"2025-03-{d:02d} 15:00:00+00:00", "s") for t in ("AAA", "BBB", "CCC") for d in (3, 4, 5)]
    csv = write_csv(tmp_path / "e.csv", rows)
    result = run_cli(VAL, "--import-csv", str(csv), "--dry-run", "--group-size", "2", "--end", "2025-06-30")
    assert result.code == 0, result.stderr
    assert "Would import 9 new event(s)" in result.stdout
    assert "Would value 9 events of 3 tickers in 2 group(s) of up to 2 tickers" in result.stdout and "network fetches: 3" in result.stdout
    assert fake_yahoo.log == []
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_failing_ticker_and_failing_group_are_isolated(run_cli: CliRunner, dsn: str, tmp_path: Path, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.unknown.add("NOPE")
    fake_yahoo.scripted["FLAKY"] = [500] * 50
    rows = [(t, "2025-03-05 15:00:00+00:00", "s") for t in ("AAA", "BOOM", "FLAKY", "NOPE", "ZED")]
    csv = write_csv(tmp_path / "e.csv", rows)
    assert run_cli(VAL, "--import-csv", str(csv), "--import-only").code == 0
    with psycopg.connect(dsn, autocommit=True) as conn:  # a real database failure for one group's write
        conn.execute("""CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN IF NEW.ticker = 'BOOM' THEN RAISE EXCEPTION 'disk says no'; END IF; RETURN NEW; END $$""")
        conn.execute("CREATE TRIGGER refuse_boom BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION refuse_boom()")
    result = run_cli(VAL, *FAST, "--max-retries", "1", "--group-size", "1", "--end", "2025-06-30")
    assert result.code == 1, result.stdout + result.stderr
    status = {t: r["valuation_status"] for (t, _), r in stored(dsn).items()}
    assert status == {"AAA": "ok", "ZED": "ok", "NOPE": "no_data", "FLAKY": "error", "BOOM": "pending"}
    assert "failed and wrote nothing: writing 1 valuations failed: disk says no" in result.stdout
    assert "FLAKY (HTTP 500 from source)" in result.stdout


def test_rate_limit_stops_keeps_valued_groups_and_rerun_finishes(run_cli: CliRunner, dsn: str, tmp_path: Path,
                                                                 fake_yahoo: FakeYahoo) -> None:
    tickers = [f"T{i:02d}" for i in range(8)]
    csv = write_csv(tmp_path / "e.csv", [(t, "2025-03-05 15:00:00+00:00", "s") for t in tickers])
    fake_yahoo.rate_limit_after = 4  # SPY + 3 tickers
    result = run_cli(VAL, "--import-csv", str(csv), *FAST, "--group-size", "1", "--concurrency", "1", "--end", "2025-06-30")
    assert result.code == 75, result.stdout + result.stderr
    assert "Resume after" in result.stdout
    valued = {t for (t, _), r in stored(dsn).items() if r["valuation_status"] == "ok"}
    assert len(valued) == 3
    fake_yahoo.rate_limit_after = None
    end_cooldown(dsn)  # as if the advised wait had passed
    assert run_cli(VAL, *FAST, "--end", "2025-06-30").code == 0
    assert {r["valuation_status"] for r in stored(dsn).values()} == {"ok"}


@pytest.mark.empty_database
@pytest.mark.slow
@pytest.mark.reliability
def test_kill_midway_then_rerun_equals_a_clean_run(fake_yahoo: FakeYahoo, dsn: str, pg_server_dsn: str, tmp_path: Path) -> None:
    tickers = [f"K{i:03d}" for i in range(60)]
    csv = write_csv(tmp_path / "e.csv", [(t, f"2025-0{m}-1{m} 15:00:00+00:00", "s") for t in tickers for m in (2, 3, 4)])
    fake_yahoo.latency = 0.05
    args = [sys.executable, "-m", VAL, "--import-csv", str(csv), *FAST, "--group-size", "2", "--concurrency", "2",
            "--end", "2025-06-30", "--cache-dir", str(tmp_path / "cache-a")]
    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(fake_yahoo, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            exists = conn.execute("SELECT to_regclass('events')").fetchone()
            counted = "SELECT count(*) FROM events WHERE valuation_status <> 'pending'"
            done = conn.execute(counted).fetchone() if exists and exists[0] else (0,)
        if done and done[0] >= 12:
            break
        time.sleep(0.05)
    kill_9_leaving_no_orphans(proc)
    with psycopg.connect(dsn) as conn:
        partial = conn.execute("SELECT count(*) FROM events WHERE valuation_status <> 'pending'").fetchone()
    assert partial is not None and 0 < partial[0] < 180
    rerun = subprocess.run(args, cwd=ROOT, env=cli_env(fake_yahoo, dsn), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    clean_name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(clean_name)))
    clean_dsn = psycopg.conninfo.make_conninfo(pg_server_dsn, dbname=clean_name)
    clean_args = [a if a != str(tmp_path / "cache-a") else str(tmp_path / "cache-b") for a in args]
    clean = subprocess.run(clean_args, cwd=ROOT, env=cli_env(fake_yahoo, clean_dsn), capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    assert stored(dsn) == stored(clean_dsn)
    with psycopg.connect(dsn) as a, psycopg.connect(clean_dsn) as b:
        q = "SELECT ticker, trade_date, open, high, low, close, adj_close, volume FROM stock_daily_bars ORDER BY 1, 2"
        assert a.execute(q).fetchall() == b.execute(q).fetchall()
    with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(clean_name)))


@pytest.mark.empty_database
@pytest.mark.parametrize("signame, method", [("SIGTERM", "fork"), ("SIGINT", "fork"), ("SIGINT", "spawn")])
def test_a_signal_to_the_whole_process_group_stops_the_run_quietly_and_the_rerun_completes(fake_yahoo: FakeYahoo, dsn: str,
                                                                                            tmp_path: Path, signame: str,
                                                                                            method: str) -> None:
    """Ctrl+C in a terminal, or a supervisor's SIGTERM, reaches every process of the run: the worker
    processes must end without a traceback of their own, and what committed stays. Spawned workers
    (Windows' way) too."""
    import os
    import signal

    tickers = [f"S{i:03d}" for i in range(60)]
    csv = write_csv(tmp_path / "e.csv", [(t, f"2025-0{m}-1{m} 15:00:00+00:00", "s") for t in tickers for m in (2, 3, 4)])
    fake_yahoo.latency = 0.05
    args = [sys.executable, "-m", VAL, "--import-csv", str(csv), *FAST, "--group-size", "2", "--concurrency", "2", "--processes", "2",
            "--end", "2025-06-30", "--cache-dir", str(tmp_path / "cache")]
    env = cli_env(fake_yahoo, dsn, BACKFILL_START_METHOD=method)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            exists = conn.execute("SELECT to_regclass('events')").fetchone()
            done = conn.execute("SELECT count(*) FROM events WHERE valuation_status <> 'pending'").fetchone() \
                if exists and exists[0] else (0,)
        if done and done[0] >= 12:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, getattr(signal, signame))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert f"worker processes ({method})" in out, out
    with psycopg.connect(dsn) as conn:
        partial = conn.execute("SELECT count(*) FROM events WHERE valuation_status <> 'pending'").fetchone()
    assert partial is not None and 0 < partial[0] < 180
    rerun = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM events WHERE valuation_status <> 'pending'").fetchone() == (180,)


@pytest.mark.parametrize("target, message", [("/dev/zero", "not a regular file"), ("long", "longer than")])
def test_an_endless_or_huge_line_csv_is_refused_quickly_in_bounded_memory(run_cli: CliRunner, tmp_path: Path, target: str,
                                                                          message: str) -> None:
    path = Path(target)
    if target == "long":
        path = tmp_path / "long.csv"
        path.write_text("ticker,event_time,source\n" + "A" * (8 << 20), encoding="utf-8")
    result = run_cli(VAL, "--import-csv", str(path), "--import-only", timeout=60)
    assert result.code == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_migration_016_forgets_valuations_made_before_an_event_had_its_base_bar(pg_server_dsn: str) -> None:
    from tasks.core.db import migrate
    from test.fix_db import fresh_database, migrate_before

    insert = ("INSERT INTO txn_events (ticker, event_time, source, base_date, price_at_event, ret_1d, valuation_status, valued_at)"
              " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
    rows = [("AAA", "2199-12-30 15:00+00", "far future, valued on today's bar", "2025-07-31", 10.0, 0.01, "ok", "2025-08-01 00:00+00"),
            ("AAA", "2199-12-31 15:00+00", "far future, then no_data", None, None, None, "no_data", "2025-08-02 00:00+00"),
            ("AAA", "2025-07-28 14:00+00", "Monday: base the Friday before", "2025-07-25", 10.0, 0.01, "ok", "2025-08-01 00:00+00"),
            ("AAA", "2025-07-07 14:00+00", "after the 4th of July weekend: base Thursday", "2025-07-03", 9.0, 0.02, "ok",
             "2025-08-01 00:00+00"),
            ("BBB", "2025-03-05 15:00+00", "no data at the source", None, None, None, "no_data", "2025-08-01 00:00+00")]
    with fresh_database(pg_server_dsn) as url, psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():  # the schema before 016, with those valuations
            migrate_before(conn, "016")
            for row in rows:
                conn.execute(insert, row)
        assert [v for v in migrate(conn) if v.startswith("016")]
        after = dict(conn.execute("SELECT source, valuation_status FROM events").fetchall())
        forgotten = conn.execute("SELECT count(*) FROM events WHERE valuation_status = 'pending' AND base_date IS NULL"
                                 " AND price_at_event IS NULL AND ret_1d IS NULL AND valued_at IS NULL").fetchone()
    # forgotten by 016 (NULL then), said 'pending' since 031
    assert after == {rows[0][2]: "pending", rows[1][2]: "pending", rows[2][2]: "ok", rows[3][2]: "ok", rows[4][2]: "no_data"}
    assert forgotten == (2,)


def test_a_shard_values_only_its_share_of_the_tickers_and_a_bad_shard_is_refused(run_cli: CliRunner, dsn: str, tmp_path: Path,
                                                                                 fake_yahoo: FakeYahoo) -> None:
    import zlib

    tickers = ["AAA", "BBB", "CCC", "DDD", "EEE"]
    csv = write_csv(tmp_path / "e.csv", [(t, "2025-03-05 15:00:00+00:00", "s") for t in tickers])
    bad = run_cli(VAL, "--import-csv", str(csv), *FAST, "--shard", "3/2")
    assert bad.code == 2 and "shard '3/2': expected K/N" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    run = run_cli(VAL, "--import-csv", str(csv), *FAST, "--end", "2025-06-30", "--shard", "2/2")
    assert run.code == 0, run.stdout + run.stderr
    mine = sorted(t for t in tickers if zlib.crc32(t.encode()) % 2 == 1)  # share 2 of 2, computed here
    assert f"Shard 2/2: {len(mine)} of the tickers with events" in run.stdout
    assert sorted(t for t, _ in stored(dsn, "valuation_status = 'ok'")) == mine
    assert sorted({e.symbol for e in fake_yahoo.chart_requests()} - {"SPY"}) == mine



def test_after_a_429_under_concurrency_no_request_waiting_for_its_slot_reaches_the_source(run_cli: CliRunner, dsn: str,
                                                                                           tmp_path: Path, fake_yahoo: FakeYahoo) -> None:
    """Ten groups in flight against a source allowing three requests a second, paced faster: after its
    first 429, the requests still waiting for their budget slots stop (a cool-down began while they
    slept), and only those already in flight arrive; before, each sleeper sent when its slot came
    (four or five more 429s, 1 to 2 s later)."""
    tickers = [f"B{i:02d}" for i in range(30)]
    csv = write_csv(tmp_path / "e.csv", [(t, "2025-03-05 15:00:00+00:00", "s") for t in tickers])
    fake_yahoo.max_per_second = 3  # the session's cookie, crumb and the benchmark's chart pass; the groups' pace does not
    result = run_cli(VAL, "--import-csv", str(csv), "--delay", "0", "--retry-wait", "0.01", "--group-size", "1", "--concurrency", "10",
                     "--end", "2025-06-30", "--rate-limit-sleep", "60", env={"YAHOO_RATE": "300/min"})
    assert result.code == 75, result.stdout + result.stderr
    first = min(r.at for r in fake_yahoo.log if r.status == 429)
    late = [(round(r.at - first, 2), r.path, r.status) for r in fake_yahoo.log if r.at > first + 1.0]
    assert late == [], late  # 300/min spaces slots 0.2 s apart: the sleepers would have come over two seconds
