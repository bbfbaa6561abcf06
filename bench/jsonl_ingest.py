"""JSONL ingestion throughput: ~5 million scalp ticks over many files, flow vs row-at-a-time baseline.

The baseline is what the source document sketches: parse each line in Python and
``executemany`` one INSERT per row (psycopg 3 pipelines these: a fair, not a strawman, baseline),
measured on a sample in the same run.

    uv run python -m bench.jsonl_ingest [--ticks 5000000] [--files 50] [--sample 100000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import psycopg

from bench.common import fresh_database, run_module, start_server, write_section

START = dt.datetime(2026, 1, 22, 0, 0, tzinfo=dt.UTC)
SYMBOLS = [f"{i:06d}" for i in range(1, 41)]


def generate(root: Path, ticks: int, files: int) -> int:
    """Scalp files of 2 Hz ticks for 40 symbols; returns the bytes written."""
    per_file = ticks // files
    written = 0
    n = 0
    for f in range(files):
        start = START + dt.timedelta(minutes=f * 10)
        path = root / "scalp" / f"{start:%Y%m%d_%H%M}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for k in range(per_file):
            half, sym = divmod(k, len(SYMBOLS))
            when = start + dt.timedelta(milliseconds=500 * half)
            stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
            price = 70000 + (n * 37) % 500
            lines.append(f'{{"ts":"{stamp}","event_time":"{stamp}","symbol":"{SYMBOLS[sym]}","bid_price":{price - 5},'
                         f'"ask_price":{price + 5},"bid_size":{100 + n % 7},"ask_size":{50 + n % 5},"last_price":{price},'
                         f'"volume":{1 + n % 10},"session_id":"track_b_session","mitigation_level":0,"quality_flag":"normal"}}\n')
            n += 1
        data = "".join(lines)
        path.write_text(data, encoding="utf-8")
        written += len(data)
    return written


def baseline(dsn: str, path: Path, sample: int) -> float:
    """Row-at-a-time: json.loads per line, executemany INSERT; returns ticks/s (parsing included)."""
    started = time.perf_counter()
    rows = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if i > sample:
                break
            r = json.loads(line)
            rows.append((r["symbol"], r["event_time"], r["bid_price"], r["ask_price"], r["bid_size"], r["ask_size"], r["last_price"],
                         r["volume"], r["session_id"], r.get("mitigation_level", 0), r.get("quality_flag", "normal"), "baseline", i))
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO scalp_ticks (symbol, event_time, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id,"
            " mitigation_level, quality_flag, source_file, source_line) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )
        conn.commit()
    return len(rows) / (time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ticks", type=int, default=5_000_000)
    p.add_argument("--files", type=int, default=50)
    p.add_argument("--sample", type=int, default=100_000, help="ticks for the executemany baseline (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4)
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-jsonl-"))
    t0 = time.perf_counter()
    size = generate(work / "data", args.ticks, args.files)
    print(f"generated {args.ticks:,} ticks in {args.files} files ({size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = start_server(work)
    if os.environ.get("BENCH_PG_TUNE"):
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            for setting in os.environ["BENCH_PG_TUNE"].split(";"):
                conn.execute(setting)  # type: ignore[arg-type]
            conn.execute("SELECT pg_reload_conf()")
    dsn = fresh_database(server.get_uri())
    env = {**os.environ, "DATABASE_URL": dsn, "PYTHONWARNINGS": "ignore", "BACKFILL_ORCHESTRATE": "plain"}
    flow = run_module("flows.jsonl_ingest", ["--root", str(work / "data"), "--concurrency", str(args.concurrency)], env)
    if flow.code != 0:
        print(flow.stdout[-2000:], flow.stderr[-2000:], file=sys.stderr)
        return 1
    with psycopg.connect(dsn) as conn:
        loaded = conn.execute("SELECT count(*) FROM scalp_ticks").fetchone()[0]  # type: ignore[index]
        bars = conn.execute("SELECT count(*) FROM scalp_1m_bars").fetchone()[0]  # type: ignore[index]
    rate = loaded / flow.seconds
    print(f"flow: {loaded:,} ticks in {flow.seconds:.1f} s = {rate:,.0f} ticks/s ({bars:,} 1-minute bars)", flush=True)
    rerun = run_module("flows.jsonl_ingest", ["--root", str(work / "data")], env)
    base_rate = baseline(dsn, sorted((work / "data" / "scalp").iterdir())[0], args.sample)
    print(f"baseline executemany: {base_rate:,.0f} ticks/s", flush=True)
    server.cleanup()
    shutil.rmtree(work, ignore_errors=True)
    megabytes = size / 1e6
    body = f"""{args.ticks:,} scalp ticks (2 Hz, 40 symbols) in {args.files} files, {megabytes:,.0f} MB, `--concurrency {args.concurrency}`,
`--batch-size 10000`. Wall time of the whole command (process start, checkpoints and 1-minute bars included).

| measure | result | target |
|---|---:|---|
| flow, all files | {flow.seconds:.1f} s = **{rate:,.0f} ticks/s** ({loaded:,} ticks, {bars:,} 1-minute bars) | >= 100,000 ticks/s |
| rerun (every file unchanged) | {rerun.seconds:.1f} s | |
| baseline: `json.loads` + row-at-a-time `executemany` INSERT, {args.sample:,}-tick sample | {base_rate:,.0f} ticks/s | |
| flow / baseline | **{rate / base_rate:.1f}x** | |
"""
    print(body)
    write_section("JSONL ingestion: 5M scalp ticks", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
