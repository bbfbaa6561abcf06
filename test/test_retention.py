"""Retention: rows outside their window go, in batches; rows inside it, and bars that pending event
valuations need, stay. Ages are set relative to now, so the expected survivors follow from the windows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from tasks.pipeline.retention import RetentionWindows, apply_retention
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
    for age in (6, 8):
        conn.execute("INSERT INTO jsonl_rejects (source_file, source_line, reason, rejected_at) VALUES ('f', %s, 'r', %s)",
                     (age, NOW - dt.timedelta(days=age)))
        conn.execute("INSERT INTO backfill_runs (flow, command, status, started_at) VALUES ('etf-backfill', 'x', 'done', %s)",
                     (NOW - dt.timedelta(days=age),))
    conn.execute("INSERT INTO backfill_runs (flow, command, status, started_at) VALUES ('etf-backfill', 'x', 'running', %s)",
                 (NOW - dt.timedelta(days=9),))
    # DONE's change came after its valuation (not acted on yet): kept; AAA's is an old log line: deleted
    conn.execute("INSERT INTO price_changes (table_name, ticker, first_date, last_date, changed_at) VALUES"
                 " ('collected_daily_stock_history', 'DONE', %s, %s, %s), ('collected_daily_stock_history', 'AAA', %s, %s, %s)",
                 (day(30), day(30), NOW - dt.timedelta(days=10), day(30), day(30), NOW - dt.timedelta(days=10)))


EXPECTED_DELETED = {"scalp_ticks": 2, "collected_daily_etf_ohlc": 1, "collected_daily_benchmark_ohlc": 1,
                    "collected_daily_stock_history": 4, "backfill_runs": 1, "jsonl_rejects": 1, "price_changes": 1}


def survivors(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "bars": list(conn.execute("SELECT 'stock', ticker, trade_date FROM collected_daily_stock_history UNION ALL"
                                  " SELECT 'etf', ticker, trade_date FROM collected_daily_etf_ohlc UNION ALL"
                                  " SELECT 'bench', ticker, trade_date FROM collected_daily_benchmark_ohlc ORDER BY 1, 2, 3")),
        "ticks": list(conn.execute("SELECT source_line FROM scalp_ticks ORDER BY 1")),
        "rejects": list(conn.execute("SELECT source_line FROM jsonl_rejects ORDER BY 1")),
        "runs": list(conn.execute("SELECT status, started_at < now() - interval '7 days' FROM backfill_runs ORDER BY 1, 2")),
        "changes": list(conn.execute("SELECT ticker FROM price_changes ORDER BY 1")),
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
        "ticks": [(29,)], "rejects": [(6,)], "runs": [("done", False), ("running", True)], "changes": [("DONE",)],
    }
    again = run_cli("flows.daily_pipeline", "--stages", "retention")
    assert again.code == 0 and "deleted 0 rows" in again.stdout


def test_retention_deletes_in_batches_and_honours_configured_windows(db: psycopg.Connection[Any]) -> None:
    for age in range(1, 11):
        db.execute("INSERT INTO scalp_ticks (symbol, event_time, session_id, source_file, source_line) VALUES ('X', %s, 's', 'f', %s)",
                   (NOW - dt.timedelta(days=age, hours=1), age))
    seen: list[tuple[str, int]] = []
    counts = apply_retention(db, RetentionWindows(realtime_days=3), dry_run=False, batch_rows=3,
                             progress=lambda table, total: seen.append((table, total)))
    assert counts["scalp_ticks"] == 8  # ages 3..10 days and an hour
    assert seen == [("scalp_ticks", 3), ("scalp_ticks", 6), ("scalp_ticks", 8)]
    assert [r[0] for r in db.execute("SELECT source_line FROM scalp_ticks ORDER BY 1")] == [1, 2]
