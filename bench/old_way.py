"""The old way, for comparison: one fetch and one UPDATE per event, sequentially.

Takes ``--sample`` pending events, and for each: fetches that event's bars with yfinance (30
sessions before to 25 after), computes its metrics with the same code, and runs one UPDATE
(committed), like the 76-hour system did. Prints seconds per event.

    uv run python -m bench.old_way --sample 1000 --end 2025-09-30
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence

import pandas as pd
import psycopg


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sample", type=int, default=1000)
    p.add_argument("--end", dest="as_of", type=dt.date.fromisoformat, required=True)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    import yfinance as yf
    import yfinance.cache as yf_cache

    from tasks.events.groups import spy_series
    from tasks.events.metrics import METRIC_COLUMNS, value_events
    from tasks.prices.obtain import price_request

    yf.set_tz_cache_location(tempfile.mkdtemp(prefix="old-way-"))
    conn = psycopg.connect(os.environ["DATABASE_URL"])
    rows = conn.execute(
        "SELECT event_id, ticker, event_at FROM events ORDER BY event_id LIMIT %s", (args.sample,)
    ).fetchall()
    spy = spy_series(conn, "etf_daily_bars", dt.date(2020, 1, 1), args.as_of)
    tz = yf_cache.get_tz_cache()
    columns = [c for c in METRIC_COLUMNS]
    assignments = ", ".join(f"{c} = %s" for c in columns)
    started = time.perf_counter()
    for event_id, ticker, when in rows:
        tz.store(ticker, "America/New_York")
        req = price_request(ticker, when, when, args.as_of)
        assert req is not None
        frame = yf.Ticker(ticker).history(start=req.start.isoformat(), end=(req.end + dt.timedelta(days=1)).isoformat(),
                                          auto_adjust=False)
        bars = pd.DataFrame({"ticker": ticker, "trade_date": frame.index.date, "close": frame["Close"].to_numpy(),
                             "adj_close": frame["Adj Close"].to_numpy(), "volume": frame["Volume"].to_numpy()})
        metrics = value_events(pd.DataFrame({"ticker": [ticker], "event_time": [when]}), bars, spy).iloc[0]
        values = [None if (isinstance(v, float) and v != v) else v for v in metrics.tolist()]
        conn.execute(f"UPDATE events SET {assignments}, valuation_status = 'ok', valued_at = now() WHERE event_id = %s",  # noqa: S608
                     [*values, event_id])
        conn.commit()
    seconds = time.perf_counter() - started
    print(f"old_way events={len(rows)} seconds={seconds:.2f} per_event={seconds / max(len(rows), 1):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
