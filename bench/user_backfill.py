"""``backfill`` for a user's universe against what a user would otherwise write: yfinance's own
``download()`` of the same tickers and ranges, stored with pandas' ``to_sql``.

Two jobs, each run both ways against the same fake Yahoo (per-request latency) into a fresh
database of one embedded PostgreSQL, one process each:
  daily:    500 tickers x 10 years of daily bars;
  intraday: 100 tickers x the last 58 days of 5-minute bars.
Measured: wall time, chart requests against the fewest possible (Yahoo's chart endpoint takes one
symbol a request; 10 years of daily bars and 60 days of 5m bars each fit one request), bars stored
per second, and the client process's CPU per bar (user + system, from ``wait4``).

    uv run python -m bench.user_backfill [--latency 0.02] [--daily 500] [--intraday 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench.common import ROOT, fresh_database, start_server, write_section
from test.fake_yahoo import FakeYahoo

END = dt.date(2025, 6, 30)

# What a user would write: download, reshape to one row per ticker and bar, to_sql.
BASELINE = r'''
import sys, warnings
warnings.simplefilter("ignore")
import pandas as pd, sqlalchemy, yfinance as yf
tickers, start, end, interval, url, cache = sys.argv[1].split(","), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
yf.set_tz_cache_location(cache)
frame = yf.download(tickers, start=start, end=end, interval=interval, auto_adjust=False, group_by="ticker", progress=False)
long = frame.stack(level=0, future_stack=True).rename_axis(["time", "ticker"]).reset_index().dropna(subset=["Close"])
long.columns = [str(c).lower().replace(" ", "_") for c in long.columns]
engine = sqlalchemy.create_engine(url)
long.to_sql("bars", engine, if_exists="append", index=False, method="multi", chunksize=5000)
print(len(long))
'''


@dataclass
class Measured:
    label: str
    seconds: float
    cpu: float
    requests: int
    bars: int


def tickers(count: int) -> list[str]:
    """``count`` distinct plausible symbols: AAA, AAB, ..."""
    out = []
    for k in range(count):
        a, b, c = k // 676, (k // 26) % 26, k % 26
        out.append("".join(chr(65 + x) for x in (a, b, c)))
    return out


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, the child's CPU seconds (user + system: this process's children's before and
    after, one child at a time) and its result."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=7200)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), done


def count(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 (our own names)
    return int(row[0]) if row else 0


def job(fake: FakeYahoo, server_dsn: str, work: Path, env: dict[str, str], label: str, names: list[str], start: dt.date,
        end: dt.date, interval: str) -> list[Measured]:
    """One job both ways: ``backfill`` then the baseline, each into a fresh database."""
    out = []
    ours_dsn = fresh_database(server_dsn)
    fake.reset_log()
    argv = [sys.executable, "-m", "flows.backfill", "--tickers", ",".join(names), "--start", str(start), "--end", str(end),
            "--interval", interval, "--delay", "0", "--rate", "1000000/min", "--cache-dir", str(work / f"cache-{interval}")]
    wall, cpu, done = timed(argv, {**env, "DATABASE_URL": ours_dsn})
    if done.returncode != 0:
        raise SystemExit(f"backfill failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
    table = "stock_daily_bars" if interval == "1d" else "intraday_bars"
    out.append(Measured(f"{label}: `backfill`", wall, cpu, len(fake.chart_requests()), count(ours_dsn, table)))
    base_dsn = fresh_database(server_dsn)
    url = "postgresql+psycopg://" + base_dsn_to_url(base_dsn)
    fake.reset_log()
    last = end + dt.timedelta(days=1)
    argv = [sys.executable, "-c", BASELINE, ",".join(names), str(start), str(last), interval, url, str(work / f"yf-{interval}")]
    wall, cpu, done = timed(argv, env)
    if done.returncode != 0:
        raise SystemExit(f"baseline failed ({done.returncode}): {done.stderr[-3000:]}")
    out.append(Measured(f"{label}: `yf.download()` + `to_sql`", wall, cpu, len(fake.chart_requests()), count(base_dsn, "bars")))
    for m in out:
        print(f"{m.label:<60} {m.seconds:8.1f} s {m.cpu:7.1f} s CPU {m.requests:6d} requests {m.bars:9,d} bars")
    return out


def base_dsn_to_url(dsn: str) -> str:
    """``user=.. dbname=.. host=/socket/dir`` as the rest of a SQLAlchemy URL (``user@/dbname?host=...``)."""
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    port = f"&port={p['port']}" if p.get("port") else ""
    return f"{p.get('user', '')}@/{p['dbname']}?host={p['host']}{port}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--latency", type=float, default=0.02, help="seconds added to every fake request (default: %(default)s)")
    p.add_argument("--daily", type=int, default=500, help="tickers of the daily job (default: %(default)s)")
    p.add_argument("--intraday", type=int, default=100, help="tickers of the intraday job (default: %(default)s)")
    args = p.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tempfile.mkdtemp(prefix="bench-user-backfill-"))
        server = start_server(work)
    try:
        with FakeYahoo(latency=args.latency) as fake:
            env = {**os.environ, **fake.env(), "PYTHONWARNINGS": "ignore", "BACKFILL_ORCHESTRATE": "plain"}
            env.pop("PREFECT_API_URL", None)
            daily = job(fake, server.get_uri(), work, env, f"daily, {args.daily} tickers x 10 years", tickers(args.daily),
                        dt.date(2015, 7, 1), END, "1d")
            today = dt.datetime.now(dt.UTC).date()
            intraday = job(fake, server.get_uri(), work, env, f"5m, {args.intraday} tickers x 58 days", tickers(args.intraday),
                           today - dt.timedelta(days=58), today, "5m")
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    rows = []
    for (ours, base), fewest in ((daily, args.daily), (intraday, args.intraday)):
        for m in (ours, base):
            rows.append(f"| {m.label} | {m.seconds:.1f} s | {m.requests:,} | {fewest:,} | {m.bars:,} | {m.bars / m.seconds:,.0f} "
                        f"| {m.cpu / max(m.bars, 1) * 1e6:.1f} us |")
    body = (f"Fake Yahoo latency {args.latency * 1000:.0f} ms a request; one embedded PostgreSQL; every run a fresh database and "
            "cache; `backfill --delay 0 --rate 1000000/min` (no pacing: the fake has no limit); the baseline is "
            "`yf.download(tickers, start, end, interval, auto_adjust=False)` with its defaults (threads), reshaped, "
            "`to_sql(method=\"multi\")`. "
            "Wall time includes the process start. CPU: the client process only (the database server's is not counted).\n\n"
            "| run | wall | chart requests | fewest possible | bars stored | bars/s | client CPU per bar |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n")
    write_section("User backfill: daily and 5-minute bars beside yf.download + to_sql", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
