"""The network floor: yfinance alone fetching the same tickers and ranges at the same concurrency,
in the same number of processes as the run it is compared with.

Reads ``ticker,start,end`` lines (the ranges event valuation requests) and calls
``yf.Ticker(t).history(start, end)`` on thread pools, nothing else: no cache, no database.
With ``--processes N`` the ranges are dealt over N forked processes of ceil(concurrency / N)
threads each, as event valuation deals its groups over one process per core. yfinance is imported
once, before the fork, as a tuned script would: no child pays the import.

    uv run python -m bench.yf_floor --ranges ranges.csv --concurrency 10 --processes 2
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import math
import multiprocessing as mp
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

warnings.simplefilter("ignore")
import yfinance as yf  # noqa: E402  (before any fork: the children share it)
import yfinance.cache as yf_cache  # noqa: E402


def fetch_part(rows: list[list[str]], threads: int) -> int:
    """Fetch ``rows`` on ``threads`` threads in this process; the number of bars."""

    yf.set_tz_cache_location(tempfile.mkdtemp(prefix="yf-floor-"))
    tz = yf_cache.get_tz_cache()
    for ticker, _, _ in rows:  # same tz pre-fill as our source, so both make one request per ticker
        tz.store(ticker, "America/New_York")

    def fetch(row: list[str]) -> int:
        end = dt.date.fromisoformat(row[2]) + dt.timedelta(days=1)
        return len(yf.Ticker(row[0]).history(start=row[1], end=end.isoformat(), auto_adjust=False, actions=True))

    with cf.ThreadPoolExecutor(max_workers=threads) as pool:
        return sum(pool.map(fetch, rows))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ranges", type=Path, required=True)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--processes", type=int, default=1)
    args = p.parse_args(argv)
    rows = [line.split(",") for line in args.ranges.read_text().splitlines() if line]
    procs = max(1, min(args.processes, args.concurrency, len(rows)))
    threads = math.ceil(args.concurrency / procs)
    started = time.perf_counter()  # yfinance is imported already (module level): not timed, as in a tuned script
    if procs == 1:
        bars = fetch_part(rows, threads)
    else:
        with mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn").Pool(procs) as pool:
            bars = sum(pool.starmap(fetch_part, [(rows[i::procs], threads) for i in range(procs)]))
    print(f"{len(rows)} tickers, {bars} bars in {time.perf_counter() - started:.2f} s ({procs} processes x {threads} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
