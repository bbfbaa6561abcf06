"""Retention: rows outside their window go, in batches; rows inside it, and bars that pending event
valuations need, stay. Ages are set relative to now, so the expected survivors follow from the windows."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tasks.core.db import connect
from tasks.events.imports import PENDING
from tasks.jsonl.partitions import RETENTION_MARK, ensure_days
from tasks.pipeline.retention import RetentionWindows, apply_retention, key_at
from test.fix_db import query_rows
from test.fix_yahoo import CliRunner

TODAY = dt.datetime.now(dt.UTC).date()
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(autouse=True)
def clock() -> None:
    """Each test's now and today, taken as it starts and never within two minutes of midnight UTC
    (it waits until after it): retention's windows are whole UTC days, and a test that filled its
    rows before midnight and ran retention after it would see every row a day older (it did, once,
    with the dates taken when the module was imported)."""
    global TODAY, NOW
    now = dt.datetime.now(dt.UTC)
    to_midnight = (dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC) - now).total_seconds()
    if to_midnight < 120:
        time.sleep(to_midnight + 1)
    NOW = dt.datetime.now(dt.UTC)
    TODAY = NOW.date()


def day(age: int) -> dt.date:
    return TODAY - dt.timedelta(days=age)


def fill(conn: psycopg.Connection[Any]) -> None:
    """Old and recent rows in every kind of table, with one pending and one valued event."""
    bars = [("stock_daily_bars", t, a) for t, a in
            [("AAA", 10), ("AAA", 700), ("AAA", 740), ("AAA", 800),       # 740 and 800 outside the 730 days
             ("PEND", 740), ("PEND", 800), ("PEND", 850),                # pending event 760 days ago: keep from 820
             ("DONE", 800)]]                                              # its event is valued: no protection
    bars += [("etf_daily_bars", "SPY", 800), ("etf_daily_bars", "XLK", 800), ("etf_daily_bars", "XLK", 5),
             ("benchmark_daily_bars", "SPY", 800), ("benchmark_daily_bars", "QQQ", 800),
             ("benchmark_daily_bars", "QQQ", 729)]
    for table, ticker, age in bars:
        conn.execute(f"INSERT INTO {table} (ticker, trade_date, close) VALUES (%s, %s, 1.0)", (ticker, day(age)))  # noqa: S608
    conn.execute("INSERT INTO events (ticker, event_at) VALUES ('PEND', %s)", (NOW - dt.timedelta(days=760),))
    conn.execute("INSERT INTO events (ticker, event_at, valued_at) VALUES ('DONE', %s, %s)",
                 (NOW - dt.timedelta(days=760), NOW - dt.timedelta(days=20)))
    ensure_days(conn, [(NOW - dt.timedelta(days=age)).date() for age in (29, 31, 45)])  # as the loader does before its ticks
    for age in (29, 31, 45):
        conn.execute("INSERT INTO observer_ticks (ticker, event_at, session_id, source_file, source_line) VALUES ('X', %s, 's', 'f', %s)",
                     (NOW - dt.timedelta(days=age), age))
    for age in (29, 31):  # another file's version of a swing bar, another file's copy of a tick: they go with them
        conn.execute("INSERT INTO swing_bar_versions (symbol, bar_time, session_id, source_file, source_line)"
                     " VALUES ('X', %s, 's', 'v', %s)", (NOW - dt.timedelta(days=age), age))
        conn.execute("INSERT INTO scalp_tick_copies (source_file, source_line, tick_key) VALUES ('c', %s, %s)",
                     (age, key_at(NOW - dt.timedelta(days=age))[:-4] + "abcd"))
    # What was fetched: AAA's range crosses the daily cutoff, PEND's is protected from 820 days ago, DONE's lies before it.
    conn.execute("INSERT INTO price_fetch_coverage (table_name, ticker, start_date, end_date) VALUES"
                 " ('stock_daily_bars', 'AAA', %s, %s), ('stock_daily_bars', 'PEND', %s, %s),"
                 " ('stock_daily_bars', 'DONE', %s, %s)", (day(800), day(10), day(850), day(700), day(900), day(750)))
    for age in (6, 8):
        conn.execute("INSERT INTO jsonl_rejects (source_file, source_line, reason, rejected_at) VALUES ('f', %s, 'r', %s)",
                     (age, NOW - dt.timedelta(days=age)))
        conn.execute("INSERT INTO backfill_runs (flow, command, status, started_at) VALUES ('etf-backfill', 'x', 'done', %s)",
                     (NOW - dt.timedelta(days=age),))
    conn.execute("INSERT INTO backfill_runs (flow, command, status, started_at) VALUES ('etf-backfill', 'x', 'running', %s)",
                 (NOW - dt.timedelta(days=9),))
    # DONE's change came after its valuation, within its event's window (not acted on yet): kept; so is SPY's,
    # which reaches every event; AAA's (no event) and DONE's other one (far from its event) are old log lines.
    changes = [("stock_daily_bars", "DONE", 762), ("etf_daily_bars", "SPY", 755),
               ("stock_daily_bars", "AAA", 762), ("stock_daily_bars", "DONE", 30)]
    for table, ticker, age in changes:
        conn.execute("INSERT INTO price_changes (table_name, ticker, first_date, last_date, changed_at) VALUES (%s, %s, %s, %s, %s)",
                     (table, ticker, day(age), day(age), NOW - dt.timedelta(days=10)))


EXPECTED_DELETED = {"observer_ticks": 2, "swing_bar_versions": 1, "scalp_tick_copies": 1, "etf_daily_bars": 1,
                    "benchmark_daily_bars": 1, "stock_daily_bars": 4, "backfill_runs": 1, "jsonl_rejects": 1,
                    "price_changes": 2}


def survivors(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "bars": list(conn.execute("SELECT 'stock', ticker, trade_date FROM stock_daily_bars UNION ALL"
                                  " SELECT 'etf', ticker, trade_date FROM etf_daily_bars UNION ALL"
                                  " SELECT 'bench', ticker, trade_date FROM benchmark_daily_bars ORDER BY 1, 2, 3")),
        "ticks": list(conn.execute("SELECT source_line FROM observer_ticks ORDER BY 1")),
        "rejects": list(conn.execute("SELECT source_line FROM jsonl_rejects ORDER BY 1")),
        "runs": list(conn.execute("SELECT status, started_at < now() - interval '7 days' FROM backfill_runs ORDER BY 1, 2")),
        "changes": list(conn.execute("SELECT ticker FROM price_changes ORDER BY 1")),
        "versions": list(conn.execute("SELECT source_line FROM swing_bar_versions ORDER BY 1")),
        "copies": list(conn.execute("SELECT source_line FROM scalp_tick_copies ORDER BY 1")),
        "fetched": list(conn.execute("SELECT ticker, start_date, end_date FROM price_fetch_coverage ORDER BY 1")),
    }


@pytest.mark.empty_database
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
        "ticks": [(29,)], "rejects": [(6,)], "runs": [("done", False), ("done", False), ("running", True)],  # and the pipeline's own
        "changes": [("DONE",), ("SPY",)],
        "versions": [(29,)], "copies": [(29,)], "fetched": [("AAA", day(730), day(10)), ("PEND", day(820), day(700))],
    }
    with connect(dsn) as conn:  # DONE is still to be revalued for the changes retention kept
        assert conn.execute(sql.SQL("SELECT ticker FROM events WHERE {} ORDER BY 1").format(PENDING)).fetchall() == [
            ("DONE",), ("PEND",)]
    again = run_cli("flows.daily_pipeline", "--stages", "retention")
    assert again.code == 0 and "deleted 0 rows" in again.stdout


def test_retention_drops_whole_utc_days_of_ticks_deletes_other_rows_in_batches_and_honours_configured_windows(
        db: psycopg.Connection[Any]) -> None:
    noon = dt.datetime.combine(TODAY, dt.time(12), tzinfo=dt.UTC)
    ensure_days(db, [(noon - dt.timedelta(days=age, hours=1)).date() for age in range(1, 11)])
    for age in range(1, 11):
        db.execute("INSERT INTO observer_ticks (ticker, event_at, session_id, source_file, source_line) VALUES ('X', %s, 's', 'f', %s)",
                   (noon - dt.timedelta(days=age, hours=1), age))
        db.execute("INSERT INTO observer_bars_10m (ticker, polled_at, session_id, source_file, source_line) VALUES ('X', %s, 's', 'f', %s)",
                   (noon - dt.timedelta(days=age, hours=1), age))
    seen: list[tuple[str, int]] = []
    counts = apply_retention(db, RetentionWindows(realtime_days=3), dry_run=False, batch_rows=3, now=noon,
                             progress=lambda table, total: seen.append((table, total)))
    # 3 days: from midnight UTC three days ago, so 11:00 that day stays; ages 4..10 go
    assert counts["observer_ticks"] == counts["observer_bars_10m"] == 7
    assert [r[0] for r in db.execute("SELECT source_line FROM observer_ticks ORDER BY 1")] == [1, 2, 3]
    assert [r[0] for r in db.execute("SELECT source_line FROM observer_bars_10m ORDER BY 1")] == [1, 2, 3]
    # ticks: one whole day at a time (the partitions of 10..4 days ago are gone); swing bars: batches of 3
    assert [s for s in seen if s[0] == "observer_ticks"] == [("observer_ticks", n) for n in range(1, 8)]
    assert [s for s in seen if s[0] == "observer_bars_10m"] == [("observer_bars_10m", n) for n in (3, 6, 7)]
    left = {r[0] for r in db.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                     " WHERE i.inhparent = 'observer_ticks'::regclass")}
    assert left == {f"observer_ticks_p{noon.date() - dt.timedelta(days=age):%Y%m%d}" for age in range(0, 4)}
    assert not db.execute("SELECT 1 FROM pg_class WHERE relname = %s",
                          (f"observer_ticks_p{noon.date() - dt.timedelta(days=4):%Y%m%d}",)).fetchall()  # dropped, not detached


METRICS = ("SELECT event_at, valuation_status, price_at_event, ret_1d, ret_5d, ret_20d, excess_ret_1d, excess_ret_20d, momentum_20d,"
           " volatility_20d, volume_ratio FROM events ORDER BY event_at")


def test_after_retention_a_valuation_fetches_again_the_bars_it_removed_and_values_as_a_database_that_never_held_them(
        run_cli: CliRunner, dsn: str, pg_server_dsn: str, tmp_path: Any) -> None:
    from test.fix_db import fresh_database

    val = ("flows.event_valuation", "--delay", "0", "--fundamentals", "none", "--end", "2026-11-30")
    events = tmp_path / "events.csv"
    events.write_text("ticker,event_time,source\nTTT,2024-06-03 15:00:00+00:00,news\nTTT,2024-07-01 15:00:00+00:00,news\n"
                      "TTT,2026-06-01 15:00:00+00:00,news\n", encoding="utf-8")
    assert run_cli(*val, "--import-csv", str(events)).code == 0
    with connect(dsn) as conn:
        valued = conn.execute(METRICS).fetchall()
    assert [r[1] for r in valued] == ["ok"] * 3
    swept = run_cli("flows.daily_pipeline", "--stages", "retention")  # daily bars older than 730 days go: 2024's
    assert swept.code == 0 and "from stock_daily_bars" in swept.stdout, swept.stdout

    again = run_cli(*val, "--overwrite")  # obtained again (here from the download cache): what was fetched lost those dates too
    assert again.code == 0, again.stdout + again.stderr
    with connect(dsn) as conn:
        assert conn.execute(METRICS).fetchall() == valued  # not "no_data: no bar closed at or before the event"
    later = tmp_path / "later.csv"
    later.write_text("ticker,event_time,source\nTTT,2024-08-01 15:00:00+00:00,news\n", encoding="utf-8")
    assert run_cli(*val, "--import-csv", str(later)).code == 0
    with connect(dsn) as conn:
        after = conn.execute(METRICS).fetchall()
    with fresh_database(pg_server_dsn) as clean:  # the same events on a database that never held the removed bars
        assert run_cli(*val, "--import-csv", str(events), env={"DATABASE_URL": clean}).code == 0
        assert run_cli(*val, "--import-csv", str(later), env={"DATABASE_URL": clean}).code == 0
        with psycopg.connect(clean) as conn:
            assert after == conn.execute(METRICS).fetchall()
    assert [r[1] for r in after] == ["ok"] * 4 and [r for r in after if r[0].year != 2024 or r[0].month != 8] == valued


def _jsonl_content(dsn: str) -> dict[str, Any]:
    """The JSONL tables without line numbers (a file cut to its kept lines numbers them differently),
    and a changed file's kept content named without the time it was kept at."""
    return query_rows(dsn, {
        "ticks": "SELECT ticker, event_at, last_price, source_file FROM observer_ticks",
        "bars": "SELECT ticker, bar_start_at, open, high, low, close, volume, tick_count FROM observer_bars_1m",
        "swing": "SELECT ticker, polled_at, close, regexp_replace(source_file, '@.*', '@kept') FROM observer_bars_10m",
        "versions": "SELECT symbol, bar_time, close, regexp_replace(source_file, '@.*', '@kept') FROM swing_bar_versions",
        "copies": "SELECT source_file, count(*) FROM scalp_tick_copies GROUP BY 1",
        "gaps": "SELECT gap_start_at, gap_seconds, source_file FROM observer_gaps",
    })


def test_jsonl_tables_after_retention_equal_a_load_of_only_the_kept_days(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                                         tmp_path: Any) -> None:
    from test.fix_db import fresh_database
    from test.jsonl_tree import iso, swing, tick, write

    one_loader = ("--concurrency", "1")  # files in name order: which of two files holds a tick, and which its copy, is the same
    midnight = dt.datetime(2026, 1, 23, tzinfo=dt.UTC)  # the boundary: a 1-day window seen from January 24
    ticks = [tick("005930", midnight + dt.timedelta(minutes=-2, milliseconds=500 * i), i) for i in range(480)]  # 23:58 .. 00:02
    later = [tick("005930", midnight + dt.timedelta(hours=1, milliseconds=500 * i), 1000 + i) for i in range(120)]
    bars = [swing("005930", midnight + dt.timedelta(minutes=10 * k), k) for k in range(-3, 2)]  # 23:30 .. 00:10
    newer = [b | {"price": {"open": 9, "high": 9, "low": 9, "close": 9}} for b in bars]
    gaps = [{"timestamp": iso(t), "gap_start_ts": iso(t), "gap_end_ts": iso(t + dt.timedelta(seconds=70)), "gap_seconds": 70,
             "scope": "scalp", "reason": "ws_disconnect", "session_id": "s"} for t in (midnight - dt.timedelta(hours=1),
                                                                                     midnight + dt.timedelta(minutes=30))]
    files = {"scalp/20260122_2358.jsonl": ticks, "scalp/20260123_0100.jsonl": later, "scalp/20260123_0200.jsonl": ticks,  # a copy
             "swing/20260122_2350.jsonl": bars, "swing/20260123_0010.jsonl": newer, "system/gap_20260122.jsonl": gaps}

    def kept(record: dict) -> bool:
        when = record.get("event_time") or record.get("gap_start_ts") or record["ts"]
        return dt.datetime.fromisoformat(when.replace("Z", "+00:00")) >= midnight

    for name, records in files.items():
        write(tmp_path / "all" / name, records)
        write(tmp_path / "kept" / name, [r for r in records if kept(r)])
    assert run_cli("flows.jsonl_ingest", "--root", str(tmp_path / "all"), *one_loader).code == 0
    with connect(dsn, autocommit=True) as conn:
        counts = apply_retention(conn, RetentionWindows(realtime_days=1, daily_days=99_999, log_days=99_999), dry_run=False,
                                 now=dt.datetime(2026, 1, 24, 9, tzinfo=dt.UTC))
    assert counts["observer_ticks"] == 240 and counts["scalp_tick_copies"] == 240 and counts["swing_bar_versions"] == 6
    with fresh_database(pg_server_dsn) as clean:
        assert run_cli("flows.jsonl_ingest", "--root", str(tmp_path / "kept"), *one_loader, env={"DATABASE_URL": clean}).code == 0
        assert _jsonl_content(dsn) == _jsonl_content(clean)
        # The winning swing file rewritten without its older bars: the versions retention removed stay removed.
        for root in ("all", "kept"):
            write(tmp_path / root / "swing/20260123_0010.jsonl", [b for b in newer if kept(b)][1:])
        assert run_cli("flows.jsonl_ingest", "--root", str(tmp_path / "all"), *one_loader).code == 0
        assert run_cli("flows.jsonl_ingest", "--root", str(tmp_path / "kept"), *one_loader, env={"DATABASE_URL": clean}).code == 0
        assert _jsonl_content(dsn) == _jsonl_content(clean)


def _a_detached_old_day(db: psycopg.Connection[Any], *, by_retention: bool) -> tuple[dt.datetime, str]:
    """A tick ten days old in its day partition, which is then detached: by a retention run that was
    killed before its drop (it marks what it detaches), or by an operator; noon today and the name."""
    noon = dt.datetime.combine(TODAY, dt.time(12), tzinfo=dt.UTC)
    old = noon - dt.timedelta(days=10)
    ensure_days(db, [old.date()])
    db.execute("INSERT INTO observer_ticks (ticker, event_at, session_id, source_file, source_line) VALUES ('X', %s, 's', 'f', 1)", (old,))
    name = f"observer_ticks_p{old.date():%Y%m%d}"
    if by_retention:
        db.execute(f"COMMENT ON TABLE {name} IS '{RETENTION_MARK}'")  # noqa: S608 (a name made above)
    db.execute(f"ALTER TABLE observer_ticks DETACH PARTITION {name}")  # noqa: S608 (a name made above)
    return noon, name


def test_a_day_partition_left_detached_by_a_killed_run_is_dropped_and_counted_by_the_next(db: psycopg.Connection[Any]) -> None:
    noon, name = _a_detached_old_day(db, by_retention=True)
    assert apply_retention(db, RetentionWindows(realtime_days=3), dry_run=True, now=noon)["observer_ticks"] == 1
    assert apply_retention(db, RetentionWindows(realtime_days=3), dry_run=False, now=noon)["observer_ticks"] == 1
    assert db.execute("SELECT to_regclass(%s)", (name,)).fetchone() == (None,)


def test_a_day_partition_an_operator_detached_is_left_alone_by_retention_and_said(db: psycopg.Connection[Any]) -> None:
    noon, name = _a_detached_old_day(db, by_retention=False)
    said: list[str] = []
    assert apply_retention(db, RetentionWindows(realtime_days=3), dry_run=False, now=noon, say=said.append)["observer_ticks"] == 0
    assert db.execute(f"SELECT count(*) FROM {name}").fetchone() == (1,)  # noqa: S608
    assert f"Retention leaves {name} alone: it was detached from observer_ticks, not by retention" in "\n".join(said)
