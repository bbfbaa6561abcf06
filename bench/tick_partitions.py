"""Ticks in UTC day partitions beside the single table they were kept in before (the schema before
migration 017, loaded by the code of ``PREVIOUS``), in the same run, on the same data: 10 million
ticks of 40 symbols over 30 days, their 1-minute bars.

Measured on each, one after the other on one server:
- retention of the 10 oldest days, by the code that kept each (``PREVIOUS``'s for the single table):
  time and WAL written; the single table's deleted rows then cost a VACUUM, whose time and WAL are
  counted too (the partitions leave nothing to vacuum);
- the JSONL document's range queries (``bench.jsonl_range_queries``), median of 40 random windows;
- the loader's ticks/s on a file of new ticks into the full table: the previous code's loader for
  the single table, this one's for the partitions, alternated (old, new, new, old).

    uv run python -m bench.tick_partitions [--ticks 10000000] [--load-ticks 500000]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.common import ROOT, fresh_database, start_server, write_section
from bench.jsonl_ingest import generate, previous_checkout
from bench.jsonl_range_queries import range_queries, timed
from tasks.core.db import migrate
from tasks.jsonl.partitions import ensure_days
from tasks.pipeline.retention import RetentionWindows, apply_retention
from test.fix_db import migrate_before

PREVIOUS = "bcd783e"  # the last commit before day partitions
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 30
SYMBOLS = 40
KEEP_DAYS = 20  # retention with "now" at the end of the 30 days: the 10 oldest go
ONE, PARTS = "single table", "day partitions"
# The single table's names: its schema is the one before 017, and migration 036 renamed them since.
OLD_NAMES = {"observer_ticks": "scalp_ticks", "observer_bars_1m": "scalp_1m_bars", "ticker": "symbol", "event_at": "event_time",
             "written_at": "ts", "bar_start_at": "bar_time", "open_tick_at": "open_time", "close_tick_at": "close_time"}
# Retention of the single table by the code that kept it (``PREVIOUS``), timed inside its process.
OLD_RETENTION = ("import datetime as dt, json, sys, time, psycopg\n"
                 "from tasks.pipeline.retention import RetentionWindows, apply_retention\n"
                 "a = json.loads(sys.argv[1])\n"
                 "with psycopg.connect(a['dsn'], autocommit=True) as conn:\n"
                 "    started = time.perf_counter()\n"
                 "    now = dt.datetime.fromisoformat(a['now'])\n"
                 "    counts = apply_retention(conn, RetentionWindows(**a['windows']), dry_run=False, now=now)\n"
                 "    print(json.dumps({'seconds': time.perf_counter() - started, 'counts': counts}))\n")


def named(statement: str, arm: str) -> str:
    """``statement`` (written with this schema's names) in the names of ``arm``'s schema."""
    if arm != ONE:
        return statement
    return re.sub(r"\b(" + "|".join(OLD_NAMES) + r")\b", lambda m: OLD_NAMES[m.group(1)], statement)


def fill(conn: psycopg.Connection[Any], ticks: int, arm: str) -> None:
    """``ticks`` ticks evenly over 30 days (keyed as the loader keys them: time first), one session
    and one file per UTC day, and their 1-minute bars."""
    partitioned = arm == PARTS
    per_symbol = ticks // SYMBOLS
    conn.execute("SET work_mem = '256MB'")
    conn.execute("SET maintenance_work_mem = '512MB'")
    if partitioned:
        ensure_days(conn, [START.date() + dt.timedelta(days=k) for k in range(DAYS)])
    conn.execute(named(
        "INSERT INTO observer_ticks (ticker, event_at, written_at, bid_price, ask_price, bid_size, ask_size, last_price, volume,"
        " session_id,"
        " source_file, source_line, tick_key)"
        " SELECT lpad(s::text, 6, '0'), t, t, 69995 + (h %% 500), 70005 + (h %% 500), 100, 50, 70000 + (h %% 500), 1 + h %% 10,"
        "        'track_b_' || to_char(t AT TIME ZONE 'UTC', 'YYYYMMDD'),"
        "        'scalp/' || to_char(t AT TIME ZONE 'UTC', 'YYYYMMDD') || '_0000.jsonl', h * %(symbols)s + s,"
        "        (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || substr(md5(h::text || '/' || s), 1, 20))::uuid"
        " FROM generate_series(0, %(per)s - 1) AS h, generate_series(1, %(symbols)s) AS s,"
        " LATERAL (SELECT %(start)s::timestamptz + h * %(step)s * interval '1 second') AS x(t)",
        arm), {"per": per_symbol, "symbols": SYMBOLS, "start": START, "step": DAYS * 86400 / per_symbol})
    # One bar per symbol and minute (every minute has ticks), made directly: aggregating 10M ticks
    # with the loader's statement costs more than the whole measurement, and the bars' values do
    # not change what is measured (their number and days do not differ).
    conn.execute(named(
        "INSERT INTO observer_bars_1m (ticker, bar_start_at, open, high, low, close, volume, tick_count, coverage_ratio, session_id,"
        " open_tick_at, open_file, open_line, close_tick_at, close_file, close_line)"
        " SELECT lpad(s::text, 6, '0'), m, 70000, 70010, 69990, 70005, 30, 6, 0.05,"
        "        'track_b_' || to_char(m AT TIME ZONE 'UTC', 'YYYYMMDD'), m,"
        "        'scalp/' || to_char(m AT TIME ZONE 'UTC', 'YYYYMMDD') || '_0000.jsonl', 1, m + interval '50 seconds',"
        "        'scalp/' || to_char(m AT TIME ZONE 'UTC', 'YYYYMMDD') || '_0000.jsonl', 2"
        " FROM generate_series(%(start)s::timestamptz, %(start)s::timestamptz + %(days)s * interval '1 day' - interval '1 minute',"
        "                      interval '1 minute') AS m, generate_series(1, %(symbols)s) AS s",
        arm), {"start": START, "days": DAYS, "symbols": SYMBOLS})
    conn.execute(named("VACUUM ANALYZE observer_ticks", arm))
    conn.execute(named("VACUUM ANALYZE observer_bars_1m", arm))
    conn.execute("CHECKPOINT")


def wal_and_seconds(conn: psycopg.Connection[Any], work: Any) -> tuple[float, float]:
    """(seconds, MB of WAL written) while ``work()`` runs."""
    before = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]  # type: ignore[index]
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", (before,)).fetchone()[0]  # type: ignore[index]
    return seconds, float(wal) / 1e6


def retained(conn: psycopg.Connection[Any], dsn: str, arm: str, windows: RetentionWindows, now: dt.datetime,
             previous: Path) -> tuple[float, int]:
    """Retention by the code that kept ``arm``'s table (this code's on the partitions, ``PREVIOUS``'s on
    the single table, timed inside its own process): (its seconds, ticks gone)."""
    if arm == PARTS:
        started = time.perf_counter()
        counts = apply_retention(conn, windows, dry_run=False, now=now)
        return time.perf_counter() - started, counts.get("observer_ticks", 0)
    given = {"dsn": dsn, "windows": dataclasses.asdict(windows), "now": now.isoformat()}
    done = subprocess.run([sys.executable, "-c", OLD_RETENTION, json.dumps(given)], cwd=previous,
                          env={**os.environ, "PYTHONPATH": str(previous)}, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"the previous code's retention failed:\n{done.stderr[-2000:]}")
    answer = json.loads(done.stdout.splitlines()[-1])
    return answer["seconds"], answer["counts"].get(named("observer_ticks", ONE), 0)


def sweep(conn: psycopg.Connection[Any], dsn: str, arm: str, windows: RetentionWindows, now: dt.datetime,
          previous: Path) -> tuple[float, float, float, float, int]:
    """Retention (``retained``), then a VACUUM of the two tables: (seconds, MB of WAL, VACUUM's
    seconds, its MB of WAL, ticks gone)."""
    conn.execute("CHECKPOINT")
    done: list[tuple[float, int]] = []
    _, wal = wal_and_seconds(conn, lambda: done.append(retained(conn, dsn, arm, windows, now, previous)))
    ((seconds, gone),) = done
    vacuum_s, vacuum_wal = wal_and_seconds(conn, lambda: [conn.execute(named(f"VACUUM {t}", arm))
                                                          for t in ("observer_ticks", "observer_bars_1m")])
    return seconds, wal, vacuum_s, vacuum_wal, gone


def load(code_root: Path, dsn: str, root: Path, arm: str) -> float:
    """One ``jsonl-ingest --root`` by the code in ``code_root``; ticks/s over its whole run."""
    count = named("SELECT count(*) FROM observer_ticks", arm)
    with psycopg.connect(dsn) as conn:
        before = conn.execute(count).fetchone()[0]  # type: ignore[index]
    env = {**os.environ, "DATABASE_URL": dsn, "PYTHONPATH": str(code_root)}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows.jsonl_ingest", "--root", str(root)], cwd=code_root, env=env,
                          capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ingestion failed ({code_root}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    with psycopg.connect(dsn) as conn:
        added = conn.execute(count).fetchone()[0] - before  # type: ignore[index]
    print(f"  {code_root.name} loaded {added:,} ticks in {seconds:.1f} s = {added / seconds:,.0f}/s", flush=True)
    return added / seconds


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ticks", type=int, default=10_000_000)
    p.add_argument("--load-ticks", type=int, default=500_000)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-parts-"))
    previous = previous_checkout(PREVIOUS, work / "previous")
    if previous is None:
        return 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = start_server(work)
    try:
        dsns = {ONE: fresh_database(server.get_uri()), PARTS: fresh_database(server.get_uri())}
        code = {ONE: previous, PARTS: ROOT}
        conns = {name: psycopg.connect(dsn, autocommit=True) for name, dsn in dsns.items()}
        migrate_before(conns[ONE], "017")  # the schema before day partitions, recorded as current
        migrate(conns[PARTS])
        for name, conn in conns.items():
            started = time.perf_counter()
            fill(conn, args.ticks, name)
            print(f"{name}: filled {args.ticks:,} ticks in {time.perf_counter() - started:.0f} s", flush=True)
        days = [START.date() + dt.timedelta(days=k) for k in range(DAYS)]
        queries = [q for q in range_queries(START, DAYS * 86400, days) if "swing" not in q[0]]
        answers = {name: {q: timed(conn, named(sql, name), params) for q, sql, params in queries} for name, conn in conns.items()}

        files = {}
        for label, at in (("a", dt.datetime(2026, 1, 25, 12, tzinfo=dt.UTC)), ("b", dt.datetime(2026, 1, 27, 12, tzinfo=dt.UTC))):
            files[label] = work / f"files-{label}"
            generate(files[label], args.load_ticks, 1, start=at)
        rates: dict[str, list[float]] = {name: [] for name in conns}
        for name, label in ((ONE, "a"), (PARTS, "a"), (PARTS, "b"), (ONE, "b")):
            conns[name].execute("CHECKPOINT")
            rates[name].append(load(code[name], dsns[name], files[label], name))

        now = START + dt.timedelta(days=DAYS)
        windows = RetentionWindows(realtime_days=KEEP_DAYS, daily_days=100_000, log_days=100_000)
        swept: dict[str, tuple[float, float, float, float, int]] = {}
        for name in (PARTS, ONE):
            swept[name] = sweep(conns[name], dsns[name], name, windows, now, previous)
            print(f"{name}: retention {swept[name][0]:.1f} s, {swept[name][1]:,.0f} MB WAL; vacuum {swept[name][2]:.1f} s,"
                  f" {swept[name][3]:,.0f} MB WAL; {swept[name][4]:,} ticks gone", flush=True)
        for conn in conns.values():
            conn.close()
    finally:
        server.cleanup()
        subprocess.run(["git", "worktree", "remove", "--force", str(work / "previous")], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    write_section("Ticks in day partitions", report(args, swept, answers, rates))
    return 0


def report(args: argparse.Namespace, swept: dict[str, tuple[float, float, float, float, int]],
           answers: dict[str, dict[str, tuple[float, float, float, int]]], rates: dict[str, list[float]]) -> str:
    one, parts = ONE, PARTS
    lines = [f"{args.ticks:,} scalp ticks of {SYMBOLS} symbols over {DAYS} days and their 1-minute bars, in one database with the "
             f"schema before migration 017 (one table, loaded and swept by the code of {PREVIOUS}) and one with day partitions "
             "(this code), "
             "on one embedded server, measured one after the other in the same run.", "",
             f"Retention of the 10 oldest days ({swept[parts][4]:,} ticks and their bars):", "",
             "| | retention | its WAL | VACUUM after it | its WAL | together |", "|---|---:|---:|---:|---:|---:|"]
    for name in (one, parts):
        s, w, vs, vw, _ = swept[name]
        lines.append(f"| {name} | {s:.1f} s | {w:,.0f} MB | {vs:.1f} s | {vw:,.0f} MB | {s + vs:.1f} s, {w + vw:,.0f} MB |")
    lines += ["", "Range queries (server execution time, median of 40 random windows after 5 warm-up runs; end to end with "
              "the rows fetched):", "", f"| query | rows | {one} | {parts} |", "|---|---:|---:|---:|"]
    for query, (m1, _, s1, rows) in answers[parts].items():
        m0, _, s0, _ = answers[one][query]
        lines.append(f"| {query} | {rows:,} | {s0:.1f} / {m0:.1f} ms | {s1:.1f} / {m1:.1f} ms |")
    lines += ["", f"Loader, {args.load_ticks:,} new ticks in one file into the full table (whole command; alternated: "
              "old, new, new, old):", "", "| | first | second |", "|---|---:|---:|"]
    for name in (one, parts):
        lines.append(f"| {name} | {rates[name][0]:,.0f} ticks/s | {rates[name][1]:,.0f} ticks/s |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
