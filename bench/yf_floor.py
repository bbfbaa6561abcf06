"""The network floor: yfinance alone fetching the same tickers and ranges at the same concurrency.

Reads ``ticker,start,end`` lines (the ranges event valuation requests) and calls
``yf.Ticker(t).history(start, end)`` on a thread pool, nothing else: no cache, no database.

    uv run python -m bench.yf_floor --ranges ranges.csv --concurrency 10
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ranges", type=Path, required=True)
    p.add_argument("--concurrency", type=int, default=10)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import yfinance as yf
    import yfinance.cache as yf_cache

    yf.set_tz_cache_location(tempfile.mkdtemp(prefix="yf-floor-"))
    rows = [line.split(",") for line in args.ranges.read_text().splitlines() if line]
    tz = yf_cache.get_tz_cache()
    for ticker, _, _ in rows:  # same tz pre-fill as our source, so both make one request per ticker
        tz.store(ticker, "America/New_York")

    def fetch(row: list[str]) -> int:
        end = dt.date.fromisoformat(row[2]) + dt.timedelta(days=1)
        return len(yf.Ticker(row[0]).history(start=row[1], end=end.isoformat(), auto_adjust=False, actions=True))

    started = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        bars = sum(pool.map(fetch, rows))
    print(f"{len(rows)} tickers, {bars} bars in {time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
