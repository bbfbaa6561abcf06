"""The JSONL source document's range queries on 10 million scalp ticks, with and without the three
indexes it recommends (measured in the same run, on the same data, warm cache).

Data: 40 symbols at 2 Hz over ~35 hours, one session per UTC day; the 1-minute bars built from
them by the project's own statement. Queries, each 40 times at random windows (the median and the
95th percentile reported): one symbol's ticks over an hour (``get_ticks_in_range``), one session's
ticks over an hour (``idx_observer_ticks_session_time``), one session's 1-minute bars over a day,
the newest 100 ticks of all symbols (``idx_observer_ticks_time``), and one session's 10-minute swing
bars over a day (``idx_observer_bars_10m_session_time``). The document expects 5-10 ms for a day's range.

    uv run python -m bench.jsonl_range_queries [--ticks 10000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from bench.common import fresh_database, start_server, write_section
from tasks.core.db import migrate
from tasks.core.sql_files import statement
from tasks.jsonl.partitions import ensure_days

START = dt.datetime(2026, 1, 22, 0, 0, tzinfo=dt.UTC)
SYMBOLS = 40
RECOMMENDED = {
    "idx_observer_ticks_time": "CREATE INDEX idx_observer_ticks_time ON observer_ticks (event_at DESC)",
    "idx_observer_ticks_session_time": "CREATE INDEX idx_observer_ticks_session_time ON observer_ticks (session_id, event_at)",
    "idx_observer_bars_10m_session_time": "CREATE INDEX idx_observer_bars_10m_session_time ON observer_bars_10m (session_id, polled_at)",
}


def fill(conn: psycopg.Connection[Any], ticks: int) -> dt.datetime:
    """``ticks`` ticks (40 symbols, 2 Hz), their 1-minute bars and 10-minute swing bars; returns the last tick's time."""
    halves = ticks // SYMBOLS
    ensure_days(conn, {(START + dt.timedelta(seconds=k * 3600)).date() for k in range(halves // 7200 + 2)})  # their day partitions
    conn.execute(
        "INSERT INTO observer_ticks (ticker, event_at, written_at, bid_price, ask_price, bid_size, ask_size, last_price, volume,"
        " session_id,"
        " source_file, source_line)"
        " SELECT lpad(s::text, 6, '0'), t, t, 70000 - 5 + (h %% 500), 70000 + 5 + (h %% 500), 100, 50, 70000 + (h %% 500), 1 + h %% 10,"
        "        'track_b_' || to_char(t AT TIME ZONE 'UTC', 'YYYYMMDD'),"
        "        'scalp/' || to_char(date_trunc('hour', t) AT TIME ZONE 'UTC', 'YYYYMMDD_HH24MI') || '.jsonl', h * %(symbols)s + s"
        " FROM generate_series(0, %(halves)s - 1) AS h, generate_series(1, %(symbols)s) AS s,"
        " LATERAL (SELECT %(start)s::timestamptz + h * interval '500 milliseconds') AS x(t)",
        {"halves": halves, "symbols": SYMBOLS, "start": START})
    conn.execute("CREATE TEMP TABLE minutes_to_refresh AS SELECT DISTINCT ticker AS symbol, date_trunc('minute', event_at) AS bar_time"
                 " FROM observer_ticks")
    conn.execute(statement("refresh_1m_bars"))
    conn.execute(
        "INSERT INTO observer_bars_10m (ticker, polled_at, open, high, low, close, volume, session_id, source_file, source_line)"
        " SELECT ticker, date_trunc('hour', bar_start_at) + floor(extract(minute FROM bar_start_at) / 10) * interval '10 minutes',"
        " min(open),"
        " max(high), min(low), max(close), sum(volume), min(session_id), 'swing/all.jsonl', row_number() OVER ()"
        " FROM observer_bars_1m GROUP BY 1, 2")
    conn.execute("VACUUM ANALYZE observer_ticks")
    conn.execute("VACUUM ANALYZE observer_bars_1m")
    conn.execute("VACUUM ANALYZE observer_bars_10m")
    return START + dt.timedelta(seconds=(halves - 1) / 2)


def timed(conn: psycopg.Connection[Any], query: str, params: Callable[[random.Random], dict[str, Any]], runs: int = 40) -> tuple[float,
                                                                                                                                     float,
                                                                                                                                     float,
                                                                                                                                     int]:
    """(median ms end to end with the rows fetched into Python, its p95, median server execution ms,
    rows of the last run) over ``runs`` random windows, after 5 warm-up runs."""
    rng = random.Random(7)
    for _ in range(5):
        conn.execute(query, params(rng)).fetchall()
    times, server, rows = [], [], 0
    explain = "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) " + query
    for _ in range(runs):
        p = params(rng)
        started = time.perf_counter()
        rows = len(conn.execute(query, p).fetchall())
        times.append((time.perf_counter() - started) * 1000)
        plan = conn.execute(explain, p).fetchone()[0]  # type: ignore[index]
        server.append(float(plan[0]["Execution Time"]))
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], statistics.median(server), rows


def range_queries(start: dt.datetime, span: float, days: list[dt.date]) -> list[tuple[str, str, Callable[[random.Random], dict[str, Any]]]]:
    """The document's range queries (name, SQL, random parameters) over ticks from ``start`` for ``span`` seconds."""
    def hour(rng: random.Random) -> dt.datetime:
        return start + dt.timedelta(seconds=rng.uniform(0, span - 3600))

    def day_session(rng: random.Random) -> dict[str, Any]:
        day = rng.choice(days)
        begin = dt.datetime.combine(day, dt.time(), dt.UTC)
        return {"session": f"track_b_{day:%Y%m%d}", "start": begin, "end": begin + dt.timedelta(days=1)}

    queries: list[tuple[str, str, Callable[[random.Random], dict[str, Any]]]] = [
        ("one symbol's ticks over an hour",
         "SELECT * FROM observer_ticks WHERE ticker = %(symbol)s AND event_at >= %(start)s AND event_at < %(end)s"
         " ORDER BY event_at, id",
         lambda r: (lambda s: {"symbol": f"{r.randint(1, SYMBOLS):06d}", "start": s, "end": s + dt.timedelta(hours=1)})(hour(r))),
        ("one session's ticks over an hour",
         "SELECT * FROM observer_ticks WHERE session_id = %(session)s AND event_at >= %(start)s AND event_at < %(end)s",
         lambda r: (lambda s: {"session": f"track_b_{s:%Y%m%d}", "start": s, "end": s + dt.timedelta(hours=1)})(hour(r))),
        ("one session's 1-minute bars over a day",
         "SELECT * FROM observer_bars_1m WHERE session_id = %(session)s AND bar_start_at >= %(start)s AND bar_start_at < %(end)s"
         " ORDER BY ticker, bar_start_at", day_session),
        ("the newest 100 ticks",
         "SELECT * FROM observer_ticks WHERE event_at <= %(end)s ORDER BY event_at DESC LIMIT 100",
         lambda r: {"end": hour(r)}),
        ("one session's 10-minute swing bars over a day",
         "SELECT * FROM observer_bars_10m WHERE session_id = %(session)s AND polled_at >= %(start)s AND polled_at < %(end)s"
         " ORDER BY polled_at", day_session),
    ]
    return queries


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ticks", type=int, default=10_000_000)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-rq-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = start_server(work)
    try:
        dsn = fresh_database(server.get_uri())
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            started = time.perf_counter()
            last = fill(conn, args.ticks)
            count = conn.execute("SELECT count(*) FROM observer_ticks").fetchone()[0]  # type: ignore[index]
            bars = conn.execute("SELECT count(*) FROM observer_bars_1m").fetchone()[0]  # type: ignore[index]
            print(f"filled {count:,} ticks, {bars:,} 1-minute bars in {time.perf_counter() - started:.0f} s", flush=True)
            span = (last - START).total_seconds()
            days = sorted({(START + dt.timedelta(seconds=s)).date() for s in range(0, int(span), 3600)})

            queries = range_queries(START, span, days)
            with_indexes = {name: timed(conn, q, params) for name, q, params in queries}
            for index in RECOMMENDED:
                conn.execute(f"DROP INDEX {index}")  # noqa: S608 (constant names)
            conn.execute("ANALYZE observer_ticks")
            conn.execute("ANALYZE observer_bars_10m")
            without = {name: timed(conn, q, params) for name, q, params in queries}
    finally:
        server.cleanup()
    lines = [f"{args.ticks:,} scalp ticks (40 symbols, 2 Hz, one session per UTC day), their {bars:,} 1-minute bars and the 10-minute "
             "swing bars; each query 40 times at random windows after 5 warm-up runs. \"server\": PostgreSQL's own execution time "
             "(EXPLAIN ANALYZE); \"end to end\": from Python with every row fetched (psycopg).",
             "Baseline: the same queries on the same data in the same run without the document's three recommended indexes.", "",
             "| query | rows | with the indexes: server / end to end (median) | without: server / end to end (median) | server speed-up |",
             "|---|---:|---:|---:|---:|"]
    for name, _, _ in queries:
        (m1, _, s1, rows), (m0, _, s0, _) = with_indexes[name], without[name]
        lines.append(f"| {name} | {rows:,} | {s1:.1f} / {m1:.1f} ms | {s0:.1f} / {m0:.1f} ms | {s0 / s1:.1f}x |")
        print(lines[-1], flush=True)
    write_section("JSONL range queries", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
