"""Retention: rows outside their window go, in batches; rows inside it, and bars that pending event
valuations need, stay. Ages are set relative to now, so the expected survivors follow from the windows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg import sql

from tasks.events.imports import PENDING
from tasks.pipeline.retention import RetentionWindows, apply_retention, key_at
from test.fix_yahoo import CliRunner

TODAY = dt.datetime.now(dt.UTC).date()
NOW = dt.datetime.now(dt.UTC)


def day(age: int) -> dt.date:
    return TODAY - dt.timedelta(days=age)


def fill(conn: psycopg.Connection[Any]) -> None:
    """Old and recent rows in every kind of table, with one pending and one valued event."""
    bars = [("collected_daily_stock_history", t, a) for t, a in
            [("AAA", 10), ("AAA", 700), ("AAA", 740), ("AAA", 800),       # 740 and 800 outside the 730 days
             ("PEND", 740), ("PEND", 800), ("PEND", 850),                # pending event 760 days ago: keep from 820
             ("DONE", 800)]]                                              # its event is valued: no protection
    bars += [("collected_daily_etf_ohlc", "SPY", 800), ("collected_daily_etf_ohlc", "XLK", 800), ("collected_daily_etf_ohlc", "XLK", 5),
             ("collected_daily_benchmark_ohlc", "SPY", 800), ("collected_daily_benchmark_ohlc", "QQQ", 800),
             ("collected_daily_benchmark_ohlc", "QQQ", 729)]
    for table, ticker, age in bars:
        conn.execute(f"INSERT INTO {table} (ticker, trade_date, close) VALUES (%s, %s, 1.0)", (ticker, day(age)))  # noqa: S608
    conn.execute("INSERT INTO txn_events (ticker, event_time) VALUES ('PEND', %s)", (NOW - dt.timedelta(days=760),))
    conn.execute("INSERT INTO txn_events (ticker, event_time, valued_at) VALUES ('DONE', %s, %s)",
                 (NOW - dt.timedelta(days=760), NOW - dt.timedelta(days=20)))
    for age in (29, 31, 45):
        conn.execute("INSERT INTO scalp_ticks (symbol, event_time, session_id, source_file, source_line) VALUES ('X', %s, 's', 'f', %s)",
                     (NOW - dt.timedelta(days=age), age))
    for age in (29, 31):  # another file's version of a swing bar, another file's copy of a tick: they go with them
        conn.execute("INSERT INTO swing_bar_versions (symbol, bar_time, session_id, source_file, source_line)"
                     " VALUES ('X', %s, 's', 'v', %s)", (NOW - dt.timedelta(days=age), age))
        conn.execute("INSERT INTO scalp_tick_copies (source_file, source_line, tick_key) VALUES ('c', %s, %s)",
                     (age, key_at(NOW - dt.timedelta(days=age))[:-4] + "abcd"))
    # What was fetched: AAA's range crosses the daily cutoff, PEND's is protected from 820 days ago, DONE's lies before it.
    conn.execute("INSERT INTO price_fetch_coverage (table_name, ticker, start_date, end_date) VALUES"
                 " ('collected_daily_stock_history', 'AAA', %s, %s), ('collected_daily_stock_history', 'PEND', %s, %s),"
                 " ('collected_daily_stock_history', 'DONE', %s, %s)", (day(800), day(10), day(850), day(700), day(900), day(750)))
    for age in (6, 8):
        conn.execute("INSERT INTO jsonl_rejects (source_file, source_line, reason, rejected_at) VALUES ('f', %s, 'r', %s)",
                     (age, NOW - dt.timedelta(days=age)))
        conn.execute("INSERT INTO backfill_runs (flow, command, status, started_at) VALUES ('etf-backfill', 'x', 'done', %s)",
                     (NOW - dt.timedelta(days=age),))
    conn.execute("INSERT INTO backfill_runs (flow, command, status, started_at) VALUES ('etf-backfill', 'x', 'running', %s)",
                 (NOW - dt.timedelta(days=9),))
    # DONE's change came after its valuation, within its event's window (not acted on yet): kept; so is SPY's,
    # which reaches every event; AAA's (no event) and DONE's other one (far from its event) are old log lines.
    changes = [("collected_daily_stock_history", "DONE", 762), ("collected_daily_etf_ohlc", "SPY", 755),
               ("collected_daily_stock_history", "AAA", 762), ("collected_daily_stock_history", "DONE", 30)]
    for table, ticker, age in changes:
        conn.execute("INSERT INTO price_changes (table_name, ticker, first_date, last_date, changed_at) VALUES (%s, %s, %s, %s, %s)",
                     (table, ticker, day(age), day(age), NOW - dt.timedelta(days=10)))


EXPECTED_DELETED = {"scalp_ticks": 2, "swing_bar_versions": 1, "scalp_tick_copies": 1, "collected_daily_etf_ohlc": 1,
                    "collected_daily_benchmark_ohlc": 1, "collected_daily_stock_history": 4, "backfill_runs": 1, "jsonl_rejects": 1,
                    "price_changes": 2}


def survivors(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "bars": list(conn.execute("SELECT 'stock', ticker, trade_date FROM collected_daily_stock_history UNION ALL"
                                  " SELECT 'etf', ticker, trade_date FROM collected_daily_etf_ohlc UNION ALL"
                                  " SELECT 'bench', ticker, trade_date FROM collected_daily_benchmark_ohlc ORDER BY 1, 2, 3")),
        "ticks": list(conn.execute("SELECT source_line FROM scalp_ticks ORDER BY 1")),
        "rejects": list(conn.execute("SELECT source_line FROM jsonl_rejects ORDER BY 1")),
        "runs": list(conn.execute("SELECT status, started_at < now() - interval '7 days' FROM backfill_runs ORDER BY 1, 2")),
        "changes": list(conn.execute("SELECT ticker FROM price_changes ORDER BY 1")),
        "versions": list(conn.execute("SELECT source_line FROM swing_bar_versions ORDER BY 1")),
        "copies": list(conn.execute("SELECT source_line FROM scalp_tick_copies ORDER BY 1")),
        "fetched": list(conn.execute("SELECT ticker, start_date, end_date FROM price_fetch_coverage ORDER BY 1")),
    }


def test_retention_dry_run_counts_then_the_stage_deletes_exactly_what_is_outside_its_window(run_cli: CliRunner, dsn: str,
                                                                                            db: psycopg.Connection[Any]) -> None:
    fill(db)
    before = survivors(db)
    dry = run_cli("flows.daily_pipeline", "--stages", "retention", "--dry-run")
    assert dry.code == 0, dry.stdout + dry.stderr
    assert f"would delete {sum(EXPECTED_DELETED.values())} rows" in dry.stdout
    for table, n in EXPECTED_DELETED.items():
        assert f"{n:,} from {table}" in dry.stdout
    assert survivors(db) == before

    done = run_cli("flows.daily_pipeline", "--stages", "retention")
    assert done.code == 0, done.stdout + done.stderr
    assert f"deleted {sum(EXPECTED_DELETED.values())} rows" in done.stdout
    assert survivors(db) == {
        "bars": sorted([("bench", "QQQ", day(729)), ("bench", "SPY", day(800)), ("etf", "SPY", day(800)), ("etf", "XLK", day(5)),
                        ("stock", "AAA", day(10)), ("stock", "AAA", day(700)), ("stock", "PEND", day(740)), ("stock", "PEND", day(800))]),
        "ticks": [(29,)], "rejects": [(6,)], "runs": [("done", False), ("running", True)], "changes": [("DONE",), ("SPY",)],
        "versions": [(29,)], "copies": [(29,)], "fetched": [("AAA", day(730), day(10)), ("PEND", day(820), day(700))],
    }
    with psycopg.connect(dsn) as conn:  # DONE is still to be revalued for the changes retention kept
        assert conn.execute(sql.SQL("SELECT ticker FROM txn_events WHERE {} ORDER BY 1").format(PENDING)).fetchall() == [
            ("DONE",), ("PEND",)]
    again = run_cli("flows.daily_pipeline", "--stages", "retention")
    assert again.code == 0 and "deleted 0 rows" in again.stdout


def test_retention_deletes_in_batches_and_honours_configured_windows_in_whole_utc_days(db: psycopg.Connection[Any]) -> None:
    noon = dt.datetime.combine(TODAY, dt.time(12), tzinfo=dt.UTC)
    for age in range(1, 11):
        db.execute("INSERT INTO scalp_ticks (symbol, event_time, session_id, source_file, source_line) VALUES ('X', %s, 's', 'f', %s)",
                   (noon - dt.timedelta(days=age, hours=1), age))
    seen: list[tuple[str, int]] = []
    counts = apply_retention(db, RetentionWindows(realtime_days=3), dry_run=False, batch_rows=3, now=noon,
                             progress=lambda table, total: seen.append((table, total)))
    assert counts["scalp_ticks"] == 7  # 3 days: from midnight UTC three days ago, so 11:00 that day stays; ages 4..10 go
    assert seen == [("scalp_ticks", 3), ("scalp_ticks", 6), ("scalp_ticks", 7)]
    assert [r[0] for r in db.execute("SELECT source_line FROM scalp_ticks ORDER BY 1")] == [1, 2, 3]
