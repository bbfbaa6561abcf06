"""Valuation multiples from a fake FMP on loopback: hand-checked on known statements, no look-ahead,
cached for 24 h with the key kept out of the cache and the output, 429s and the daily quota."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from test.fake_fmp import FakeFmp, quarter
from test.fake_yahoo import FakeYahoo
from test.fix_db import end_cooldown
from test.fix_yahoo import CliRunner

VAL = "flows.event_valuation"
KEY = "fmp-secret-key-7f3a9c"
FAST = ("--delay", "0", "--retry-wait", "0.01", "--end", "2025-06-30")
EVENT_1 = "2025-04-21 15:00:00+00:00"  # after the Dec-2024 quarter was filed, before the Mar-2025 one
EVENT_2 = "2025-05-12 15:00:00+00:00"  # after it


def caps_for(base: float) -> dict[dt.date, float]:
    start = dt.date(2025, 3, 1)
    return {start + dt.timedelta(days=i): base + i * 1e9 for i in range(120)}


@pytest.fixture
def fmp() -> Iterator[FakeFmp]:
    with FakeFmp(key=KEY) as fake:
        fake.statements["FUNDA"] = [
            quarter("FUNDA", "2023-12-31", "2024-02-10", 90e9, 0.90),
            quarter("FUNDA", "2024-03-31", "2024-05-01", 100e9, 1.00),
            quarter("FUNDA", "2024-06-30", "2024-08-01", 110e9, 1.10),
            quarter("FUNDA", "2024-09-30", "2024-10-31", 120e9, 1.20),
            quarter("FUNDA", "2024-12-31", "2025-02-14", 130e9, 1.30),
            quarter("FUNDA", "2025-03-31", "2025-05-01", 140e9, 1.40),  # period ended before event 1, filed after it
        ]
        fake.statements["FUNDB"] = [
            quarter("FUNDB", "2024-03-31", "2024-05-01", 10e9, -0.50),
            quarter("FUNDB", "2024-06-30", "2024-08-01", 11e9, 0.20),
            quarter("FUNDB", "2024-09-30", "2024-10-31", 12e9, -0.30),
            quarter("FUNDB", "2024-12-31", "2025-02-14", 13e9, 0.10),
        ]
        fake.caps = {"FUNDA": caps_for(2e12), "FUNDB": caps_for(5e10)}
        yield fake


def events_csv(tmp_path: Path) -> Path:
    path = tmp_path / "events.csv"
    path.write_text("ticker,event_time,source\n" + f"FUNDA,{EVENT_1},s\nFUNDA,{EVENT_2},s\nFUNDB,{EVENT_1},s\n", encoding="utf-8")
    return path


def stored(dsn: str) -> dict[tuple[str, str], dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT ticker, event_at, base_date, price_at_event, market_cap, pe_ttm, ps_ttm, fundamentals_at"
                            " FROM events").fetchall()
    names = ("base_date", "price", "market_cap", "pe_ttm", "ps_ttm", "fundamentals_at")
    return {(r[0], r[1].astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")): dict(zip(names, r[2:], strict=True)) for r in rows}


def env(fmp: FakeFmp, **extra: str) -> dict[str, str]:
    return {"FMP_API_KEY": KEY, "FMP_BASE_URL": fmp.base_url, **extra}


@pytest.mark.empty_database
def test_multiples_match_hand_computed_ttm_without_look_ahead(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                               fmp: FakeFmp, tmp_path: Path) -> None:
    result = run_cli(VAL, "--import-csv", str(events_csv(tmp_path)), *FAST, env=env(fmp))
    assert result.code == 0, result.stdout + result.stderr
    assert "Fundamentals (FMP): 3 events of 2 tickers; 3 with multiples; 4 request(s), 0 from cache" in result.stdout
    rows = stored(dsn)
    a1, a2, b1 = rows[("FUNDA", EVENT_1)], rows[("FUNDA", EVENT_2)], rows[("FUNDB", EVENT_1)]
    # Event 1: TTM = Mar, Jun, Sep, Dec 2024 (the Mar-2025 quarter was filed after it)
    assert a1["market_cap"] == fmp.caps["FUNDA"][a1["base_date"]]
    assert a1["pe_ttm"] == pytest.approx(a1["price"] / (1.00 + 1.10 + 1.20 + 1.30), rel=1e-12)
    assert a1["ps_ttm"] == pytest.approx(a1["market_cap"] / (100e9 + 110e9 + 120e9 + 130e9), rel=1e-12)
    # Event 2: TTM = Jun 2024 .. Mar 2025
    assert a2["pe_ttm"] == pytest.approx(a2["price"] / (1.10 + 1.20 + 1.30 + 1.40), rel=1e-12)
    assert a2["ps_ttm"] == pytest.approx(fmp.caps["FUNDA"][a2["base_date"]] / (110e9 + 120e9 + 130e9 + 140e9), rel=1e-12)
    # Negative TTM EPS: no P/E, but P/S
    assert b1["pe_ttm"] is None
    assert b1["ps_ttm"] == pytest.approx(fmp.caps["FUNDB"][b1["base_date"]] / (10e9 + 11e9 + 12e9 + 13e9), rel=1e-12)
    assert {(r.path, r.symbol) for r in fmp.log} == {(p, s) for p in ("/stable/income-statement",
                                                                      "/stable/historical-market-capitalization")
                                                     for s in ("FUNDA", "FUNDB")}
    assert all(r.key_ok for r in fmp.log)

    fmp.log.clear()
    again = run_cli(VAL, *FAST, "--overwrite", env=env(fmp))  # everything recomputed, every answer from the 24 h cache
    assert again.code == 0, again.stdout + again.stderr
    assert fmp.log == []
    assert "0 request(s), 4 from cache" in again.stdout
    assert {k: {c: v for c, v in r.items() if c != "fundamentals_at"} for k, r in stored(dsn).items()} == \
        {k: {c: v for c, v in r.items() if c != "fundamentals_at"} for k, r in rows.items()}


def test_the_key_stays_out_of_output_and_cache(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, fmp: FakeFmp, tmp_path: Path) -> None:
    fmp.statements["FUNDB"] = []  # a ticker FMP knows nothing about
    fmp.rate_limit_after = 3
    cache = tmp_path / "cache"
    result = run_cli(VAL, "--import-csv", str(events_csv(tmp_path)), *FAST, env=env(fmp), cache_dir=cache)
    assert result.code == 75, result.stdout + result.stderr
    assert KEY not in result.stdout + result.stderr
    files = list(cache.rglob("fmp_http_cache*"))
    assert files and all(KEY.encode() not in f.read_bytes() for f in files)
    assert any(b"income-statement" in f.read_bytes() for f in files)  # the cache does hold the answers
    import json
    import sqlite3

    (db_file,) = [f for f in files if f.suffix == ".sqlite"]
    with sqlite3.connect(db_file) as cached:
        values = [v for (v,) in cached.execute("SELECT value FROM responses")]
    assert values and all(json.loads(v) for v in values)  # stored as JSON: nothing on disk is ever unpickled
    with psycopg.connect(dsn) as conn:
        dumped = str(conn.execute("SELECT * FROM backfill_internal.backfill_runs").fetchall())
        dumped += str(conn.execute("SELECT * FROM backfill_internal.rate_budgets").fetchall())
    assert KEY not in dumped


def test_429_stops_and_the_rerun_continues(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, fmp: FakeFmp, tmp_path: Path) -> None:
    fmp.rate_limit_after = 3  # FUNDA's two answers, then FUNDB's first request is refused
    result = run_cli(VAL, "--import-csv", str(events_csv(tmp_path)), *FAST, env=env(fmp))
    assert result.code == 75, result.stdout + result.stderr
    assert "FMP rate limit" in result.stdout and "Resume after" in result.stdout
    rows = stored(dsn)
    assert rows[("FUNDA", EVENT_1)]["pe_ttm"] is not None and rows[("FUNDB", EVENT_1)]["fundamentals_at"] is None
    fmp.rate_limit_after = None
    fmp.log.clear()
    refused = run_cli(VAL, *FAST, env=env(fmp))  # the fmp budget is cooling down: nobody asks
    assert refused.code == 75 and fmp.log == []
    end_cooldown(dsn, "fmp")
    done = run_cli(VAL, *FAST, env=env(fmp))
    assert done.code == 0, done.stdout + done.stderr
    assert {r.symbol for r in fmp.log} == {"FUNDB"}  # FUNDA was done: only the rest is asked for
    assert stored(dsn)[("FUNDB", EVENT_1)]["ps_ttm"] is not None


def test_daily_quota_stops_cleanly_and_continues_the_next_day(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, fmp: FakeFmp,
                                                              tmp_path: Path) -> None:
    csv = events_csv(tmp_path)
    assert run_cli(VAL, "--import-csv", str(csv), *FAST, "--fundamentals", "none", env=env(fmp)).code == 0
    plan = run_cli(VAL, *FAST, "--fmp-daily-limit", "2", "--dry-run", env=env(fmp))
    assert "2 tickers need 4 request(s) (0 more from the 24 h cache); budget 2/day" in plan.stdout, plan.stdout
    assert "2 day(s)" in plan.stdout and fmp.log == []
    first = run_cli(VAL, *FAST, "--fmp-daily-limit", "2", env=env(fmp))
    assert first.code == 75, first.stdout + first.stderr
    assert "daily quota of 2 requests" in first.stdout and "1 ticker(s) left for the next run" in first.stdout
    assert len(fmp.log) == 2
    with psycopg.connect(dsn, autocommit=True) as conn:  # the next UTC day
        conn.execute("UPDATE backfill_internal.rate_budgets SET day = day - 1 WHERE name = 'fmp'")
    second = run_cli(VAL, *FAST, "--fmp-daily-limit", "2", env=env(fmp))
    assert second.code == 0, second.stdout + second.stderr
    assert [r.symbol for r in fmp.log[2:]] == ["FUNDB", "FUNDB"]
    assert all(r["fundamentals_at"] is not None for r in stored(dsn).values())


def test_without_a_key_the_columns_stay_empty_and_the_run_says_so_once(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                                       tmp_path: Path) -> None:
    result = run_cli(VAL, "--import-csv", str(events_csv(tmp_path)), *FAST, env={"FMP_API_KEY": ""})
    assert result.code == 0, result.stdout + result.stderr
    assert result.stdout.count("Fundamentals: off") == 1
    assert all(r["market_cap"] is None and r["pe_ttm"] is None and r["price"] is not None for r in stored(dsn).values())
    forced = run_cli(VAL, *FAST, "--fundamentals", "fmp", env={"FMP_API_KEY": ""})
    assert forced.code == 2 and "FMP_API_KEY" in forced.stderr


def test_transient_errors_are_retried(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, fmp: FakeFmp, tmp_path: Path) -> None:
    fmp.fail_next = 2  # the first two answers are 502s
    result = run_cli(VAL, "--import-csv", str(events_csv(tmp_path)), *FAST, env=env(fmp))
    assert result.code == 0, result.stdout + result.stderr
    assert len(fmp.log) == 4 + 2
    assert all(r["ps_ttm"] is not None for r in stored(dsn).values())


def test_an_unexpected_answer_is_transient_the_run_says_so_and_the_rerun_fills_it(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                                                fmp: FakeFmp, tmp_path: Path) -> None:
    fmp.garbled.add("FUNDB")  # 200 with an object, not the list FMP sends: classified transient by type
    result = run_cli(VAL, "--import-csv", str(events_csv(tmp_path)), *FAST, "--max-retries", "0", env=env(fmp))
    assert result.code == 1, result.stdout + result.stderr  # not 0: FUNDB's multiples are still due
    assert "1 ticker(s) failed for now, retried next run (FUNDB)" in result.stdout
    rows = stored(dsn)
    assert [r["fundamentals_at"] is None for (t, _), r in sorted(rows.items())] == [False, False, True]  # FUNDA, FUNDA, FUNDB
    fmp.garbled.clear()
    again = run_cli(VAL, *FAST, env=env(fmp))
    assert again.code == 0, again.stdout + again.stderr
    assert all(r["ps_ttm"] is not None for r in stored(dsn).values())
