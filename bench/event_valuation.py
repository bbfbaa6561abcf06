"""Event valuation at full scale: 136,954 skewed events over 5,000 tickers, fake Yahoo at 50 ms.

Reports, in one run: (a) the valuation from an empty price table; (b) yfinance alone fetching
the same tickers and ranges at the same concurrency (the network floor), in two consecutive pairs
after the fake was warmed; (c) an ``--overwrite``
rerun with every price stored (no network), in events/s; (d) the old way (one fetch + one
UPDATE per event, sequential) on a 1,000-event sample, extrapolated; and peak RSS at 137k and
1.37M events. Writes its section of bench/RESULTS.md.

    uv run python -m bench.event_valuation [--events 136954] [--tickers 5000] [--skip-1m]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import psycopg

from bench.common import fresh_database, run_module, start_server, write_section
from bench.gen_events import generate
from test.fake_yahoo import FakeYahoo

AS_OF = "2025-09-30"


def _peak(stderr: str) -> float:
    match = re.search(r"peak_rss_mb=(\d+)", stderr)
    return float(match.group(1)) if match else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=136_954)
    p.add_argument("--tickers", type=int, default=5_000)
    p.add_argument("--latency", type=float, default=0.05)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--sample", type=int, default=1_000, help="events for the old-way baseline (default: %(default)s)")
    p.add_argument("--skip-1m", action="store_true", help="skip the 10x-events memory run")
    args = p.parse_args(argv)

    from tasks.prices.obtain import price_request

    work = Path(tempfile.mkdtemp(prefix="bench-val-"))
    csv = work / "events.csv"
    counts = generate(csv, args.events, args.tickers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = start_server(work)
    dsn = fresh_database(server.get_uri())
    with FakeYahoo(latency=args.latency) as fake:
        env = {**os.environ, **fake.env(), "PYTHONWARNINGS": "ignore", "DATABASE_URL": dsn, "BACKFILL_ORCHESTRATE": "plain"}
        # As on a user's machine, Python keeps compiled bytecode: this sandbox sets PYTHONDONTWRITEBYTECODE,
        # which made every process start (ours and the floor's) compile pandas & co. again, ~1 s each.
        # The import step below runs first and leaves the bytecode for the timed runs.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        val = ["flows.event_valuation", "--delay", "0", "--rate", "1000000/min", "--concurrency", str(args.concurrency), "--end", AS_OF,
               "--cache-dir", str(work / "cache")]

        imported = run_module(*_cli(val, "--import-csv", str(csv), "--import-only"), env=env)
        print(f"import: {imported.seconds:.1f} s", flush=True)

        events = pd.read_csv(csv)
        events["t"] = pd.to_datetime(events["event_time"], utc=True)
        spans = events.groupby("ticker")["t"].agg(["min", "max"])
        ranges = work / "ranges.csv"
        with ranges.open("w") as fh:
            for ticker, row in spans.iterrows():
                req = price_request(str(ticker), row["min"], row["max"], dt.date.fromisoformat(AS_OF))
                if req is not None:
                    fh.write(f"{ticker},{req.start},{req.end}\n")
        # The floor runs in as many processes as our run does (one per core by default; see tasks/events/workers.py).
        processes = os.cpu_count() or 1
        floor_args = ["--ranges", str(ranges), "--concurrency", str(args.concurrency), "--processes", str(processes)]
        warm = work / "warm.csv"  # the fake (its TLS, its threads) warmed before anything is timed
        warm.write_text("".join(ranges.read_text().splitlines(keepends=True)[:50]))
        _check(run_module("bench.yf_floor", ["--ranges", str(warm), "--concurrency", str(args.concurrency)], env), "warm-up")

        pairs: list[tuple[float, float, int]] = []
        cold_stderr = ""
        for attempt in (1, 2):  # two consecutive pairs: cold valuation (a fresh price table), then the floor
            if attempt == 2:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute("TRUNCATE stock_daily_bars, etf_daily_bars, backfill_internal.price_fetch_coverage,"
                                 " dividends_and_splits, price_changes")
                    conn.execute("UPDATE events SET valuation_status = 'pending', valued_at = NULL")
                shutil.rmtree(work / "cache", ignore_errors=True)
            fake.reset_log()
            cold = run_module("bench.rss", ["--", sys.executable, "-m", *val], env)
            _check(cold, "cold valuation")
            cold_stderr = cold_stderr or cold.stderr
            requests = len(fake.chart_requests())
            floor = run_module("bench.yf_floor", floor_args, env)
            _check(floor, "yfinance floor")
            pairs.append((cold.seconds, floor.seconds, requests))
            print(f"pair {attempt}: (a) cold valuation {cold.seconds:.1f} s ({requests} chart requests, peak {_peak(cold.stderr):.0f} MB),"
                  f" (b) yfinance alone {floor.seconds:.1f} s: {cold.seconds / floor.seconds:.2f}x", flush=True)
        cold_requests = pairs[0][2]

        fake.reset_log()
        over = run_module("bench.rss", ["--", sys.executable, "-m", *val, "--overwrite"], env)
        _check(over, "overwrite")
        over_requests = len(fake.log)
        print(f"(c) overwrite: {over.seconds:.1f} s = {args.events / over.seconds:,.0f} events/s, {over_requests} requests", flush=True)

        fake.reset_log()
        old = run_module("bench.old_way", ["--sample", str(args.sample), "--end", AS_OF], env)
        _check(old, "old way")
        per_event = float(re.search(r"per_event=([\d.]+)", old.stdout).group(1))  # type: ignore[union-attr]
        old_total = per_event * args.events
        print(f"(d) old way: {per_event * 1000:.1f} ms/event -> {old_total / 3600:.2f} h for {args.events:,}", flush=True)

        big_rss = float("nan")
        big_seconds = float("nan")
        if not args.skip_1m:
            big = work / "events10x.csv"
            with csv.open() as src, big.open("w") as dst:
                dst.write(src.readline())
                for line in src:
                    ticker, when, source = line.rstrip("\n").split(",")
                    for k in range(10):
                        dst.write(f"{ticker},{when},{source}x{k}\n")
            big_import = run_module(*_cli(val, "--import-csv", str(big), "--import-only"), env=env)
            _check(big_import, "1.37M import")
            run = run_module("bench.rss", ["--", sys.executable, "-m", *val, "--overwrite"], env)
            _check(run, "1.37M overwrite")
            big_rss, big_seconds = _peak(run.stderr), run.seconds
            print(f"10x events: {big_seconds:.1f} s, peak {big_rss:.0f} MB", flush=True)
    server.cleanup()
    shutil.rmtree(work, ignore_errors=True)

    (a, b, _), (a2, b2, _) = pairs
    c = over.seconds
    most, latency_ms = max(counts.values()), args.latency * 1000
    body = f"""{args.events:,} events over {args.tickers:,} tickers (max {most} per ticker), fake Yahoo latency {latency_ms:.0f} ms,
`--concurrency {args.concurrency}`, `--delay 0`, `--end {AS_OF}`. Wall times of whole commands (process start included),
with Python's bytecode cache on for every command, ours and the floor's, as on a user's machine.

| measure | result | target |
|---|---:|---|
| import CSV ({args.events:,} rows) | {imported.seconds:.1f} s | |
| (a) valuation from an empty price table, {processes} processes | **{a:.1f} s**, then {a2:.1f} s ({cold_requests:,} chart requests) \
| <= 1.3 x (b) |
| (b) yfinance alone, same tickers and ranges, same concurrency, {processes} processes like (a), yfinance imported once before \
the fork | {b:.1f} s, then {b2:.1f} s | the floor |
| (a) / (b), two consecutive pairs | **{a / b:.2f}x**, **{a2 / b2:.2f}x** | <= 1.3x |
| (c) `--overwrite` rerun, all prices stored | {c:.1f} s = **{args.events / c:,.0f} events/s**, {over_requests} requests \
| >= 25,000 events/s |
| (d) old way, {args.sample:,}-event sample | {per_event * 1000:.1f} ms/event -> {old_total:,.0f} s ({old_total / 3600:.1f} h) for all | |
| speed-up over the old way, from empty tables | **{old_total / a:,.0f}x** | >= 25x |
| speed-up over the old way, revaluation | **{old_total / c:,.0f}x** | >= 1,000x |
| peak RSS (largest process), 137k events, cold | {_peak(cold_stderr):.0f} MB | |
| peak RSS (largest process), 137k events, overwrite | {_peak(over.stderr):.0f} MB | |
| peak RSS (largest process), 1.37M events, overwrite | {big_rss:.0f} MB ({big_seconds:.1f} s) | flat in the number of events |
"""
    print(body)
    write_section("Event valuation: 137k events", body)
    return 0


def _cli(val: list[str], *extra: str) -> tuple[str, list[str]]:
    return val[0], [*val[1:], *extra]


def _check(result: object, label: str) -> None:
    code = getattr(result, "code", 1)
    if code != 0:
        print(getattr(result, "stdout", "")[-2000:], getattr(result, "stderr", "")[-3000:], file=sys.stderr)
        raise SystemExit(f"{label} failed with exit code {code}")


if __name__ == "__main__":
    sys.exit(main())
