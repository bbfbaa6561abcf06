"""JSONL ingestion throughput: ~5 million scalp ticks over many files and ~1 million in one 300 MB file,
this loader beside the previous one (a checkout of its commit) and a row-at-a-time baseline.

The baseline is what the source document sketches: parse each line in Python and
``executemany`` one INSERT per row (psycopg 3 pipelines these: a fair, not a strawman, baseline),
measured on a sample in the same run.

    uv run python -m bench.jsonl_ingest [--ticks 5000000] [--files 50] [--big-ticks 1080000] [--previous COMMIT]
"""

from __future__ import annotations

import argparse
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

import psycopg

from bench.common import ROOT, fresh_database, run_module, start_server, write_section

START = dt.datetime(2026, 1, 22, 0, 0, tzinfo=dt.UTC)
SYMBOLS = [f"{i:06d}" for i in range(1, 41)]
PREVIOUS = "5325d3f"  # the loader before msgspec checks, pieces of big files and the tuned embedded server


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


def previous_checkout(commit: str, into: Path) -> Path | None:
    """The project at ``commit`` (a git worktree), to time the loader as it was beside this one; None
    when there is no such commit here (a shallow clone)."""
    made = subprocess.run(["git", "worktree", "add", "--detach", str(into), commit], cwd=ROOT, capture_output=True, text=True)
    if made.returncode != 0:
        print(f"no baseline: {made.stderr.strip()}", file=sys.stderr)
        return None
    return into


def timed_load(server_uri: str, root: Path, args: list[str], env: dict[str, str], code_root: Path = ROOT) -> tuple[float, int, int, str]:
    """One ingestion command on a fresh database: (seconds, ticks stored, 1-minute bars, how the big file was loaded)."""
    dsn = fresh_database(server_uri)
    with psycopg.connect(server_uri, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # every measured run starts with nothing left to write from what came before
    os.sync()  # (the generated files included: the first run would otherwise share the disk with their write-back)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows.jsonl_ingest", "--root", str(root), *args], cwd=code_root,
                          env={**env, "DATABASE_URL": dsn}, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ingestion failed ({code_root}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    with psycopg.connect(dsn) as conn:
        loaded = conn.execute("SELECT count(*) FROM scalp_ticks").fetchone()[0]  # type: ignore[index]
        bars = conn.execute("SELECT count(*) FROM scalp_1m_bars").fetchone()[0]  # type: ignore[index]
    print(f"{code_root.name} {' '.join(args)} {root.name}: {loaded:,} ticks in {seconds:.1f} s = {loaded / seconds:,.0f}/s", flush=True)
    pieces = re.search(r" in (\d+) pieces:", proc.stdout)
    return seconds, loaded, bars, f"{pieces[1]} pieces at once" if pieces else "one process"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ticks", type=int, default=5_000_000)
    p.add_argument("--files", type=int, default=50)
    p.add_argument("--big-ticks", type=int, default=1_080_000, help="ticks in the one big file (default: %(default)s, ~300 MB)")
    p.add_argument("--sample", type=int, default=100_000, help="ticks for the executemany baseline (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--previous", default=PREVIOUS, help="commit of the loader to time beside this one (default: %(default)s)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-jsonl-"))
    t0 = time.perf_counter()
    size = generate(work / "many", args.ticks, args.files)
    big = generate(work / "one", args.big_ticks, 1)
    print(f"generated {args.ticks:,} ticks in {args.files} files ({size / 1e6:,.0f} MB) and {args.big_ticks:,} in one file"
          f" ({big / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f} s", flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = start_server(work)
    uri = server.get_uri()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "BACKFILL_ORCHESTRATE": "plain"}
    conc = ["--concurrency", str(args.concurrency)]
    previous = previous_checkout(args.previous, work / "previous")
    try:
        # Not timed: a long-lived server recycles its WAL files, a new one creates and zero-fills
        # gigabytes of them during its first big load; every measured run finds them there.
        timed_load(uri, work / "many", conc, env)
        many = timed_load(uri, work / "many", conc, env)
        one = timed_load(uri, work / "one", conc, env)
        one_process = timed_load(uri, work / "one", [*conc, "--split-mb", "0"], env)
        old_many = timed_load(uri, work / "many", conc, env, previous) if previous else None
        old_one = timed_load(uri, work / "one", conc, env, previous) if previous else None
        dsn = fresh_database(uri)
        run_module("flows.jsonl_ingest", ["--root", str(work / "many"), *conc], {**env, "DATABASE_URL": dsn})
        rerun = run_module("flows.jsonl_ingest", ["--root", str(work / "many"), *conc], {**env, "DATABASE_URL": dsn})
        base_rate = baseline(dsn, sorted((work / "many" / "scalp").iterdir())[0], args.sample)
        print(f"baseline executemany: {base_rate:,.0f} ticks/s", flush=True)
    finally:
        server.cleanup()
        if previous:
            subprocess.run(["git", "worktree", "remove", "--force", str(previous)], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    def row(label: str, measured: tuple[float, int, int, str] | None, target: str = "") -> str:
        if measured is None:
            return f"| {label} | (no checkout of {args.previous}) | {target} |"
        seconds, loaded, bars, _ = measured
        return f"| {label} | {seconds:.1f} s = **{loaded / seconds:,.0f} ticks/s** ({loaded:,} ticks, {bars:,} 1-minute bars) | {target} |"

    body = f"""{args.ticks:,} scalp ticks (2 Hz, 40 symbols) in {args.files} files ({size / 1e6:,.0f} MB), and {args.big_ticks:,}
in one file ({big / 1e6:,.0f} MB); `--concurrency {args.concurrency}`, `--batch-size 10000`, embedded PostgreSQL as the project sets it up.
Wall time of the whole command on a fresh database (process start, checkpoints and 1-minute bars included), after one
untimed load of the 50 files (a long-lived server recycles its WAL files; a new one first creates them). "Previous" is
the loader at `{args.previous}` (the code the throughput issue was measured on), run from a checkout of that commit on the
same server in the same run.

| measure | result | target |
|---|---:|---|
{row("many files, this loader", many, ">= 150,000 ticks/s")}
{row("many files, previous loader", old_many)}
{row(f"one big file, this loader ({one[3]})", one, ">= 100,000 ticks/s")}
{row("one big file, this loader in one process (`--split-mb 0`)", one_process)}
{row("one big file, previous loader", old_one)}
| rerun of the many files (every file unchanged) | {rerun.seconds:.1f} s | |
| baseline: `json.loads` + row-at-a-time `executemany` INSERT, {args.sample:,}-tick sample | {base_rate:,.0f} ticks/s | |
"""
    print(body)
    write_section("JSONL ingestion: 5M scalp ticks", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
