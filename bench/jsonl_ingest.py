"""JSONL ingestion throughput: ~5 million scalp ticks over many files and ~1 million in one 300 MB file,
this loader beside the previous one (a checkout of its commit) and a row-at-a-time baseline.

The baseline is what the source document sketches: parse each line in Python and
``executemany`` one INSERT per row (psycopg 3 pipelines these: a fair, not a strawman, baseline),
measured on a sample in the same run.

    uv run python -m bench.jsonl_ingest [--ticks 5000000] [--files 50] [--big-ticks 1080000] [--previous COMMIT]
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg

from bench.common import ROOT, fresh_database, run_module, start_server, write_section
from tasks.jsonl.split import max_pieces

START = dt.datetime(2026, 1, 22, 0, 0, tzinfo=dt.UTC)
SYMBOLS = [f"{i:06d}" for i in range(1, 41)]
PREVIOUS = "5325d3f"  # the loader before msgspec checks, pieces of big files and the tuned embedded server


def generate(root: Path, ticks: int, files: int, *, start: dt.datetime = START) -> int:
    """Scalp files of 2 Hz ticks for 40 symbols from ``start``; returns the bytes written."""
    per_file = ticks // files
    written = 0
    n = 0
    first = start
    for f in range(files):
        start = first + dt.timedelta(minutes=f * 10)
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


@dataclass
class CpuUse:
    """CPU seconds a measured run spent: in the processes this bench started and waited for (the
    loader's, the bare COPY's clients) and in the PostgreSQL server's (backends, WAL writer,
    checkpointer). On two cores the two parties share the CPU: their sum per tick explains a rate."""

    ours: float = 0.0
    server: float = 0.0

    def per_tick(self, ticks: int, ours: str = "loader") -> str:
        return f"CPU a tick: {ours} {self.ours / ticks * 1e6:.1f} us, server {self.server / ticks * 1e6:.1f} us"


def _children_cpu() -> float:
    import resource  # (Unix: the bench runs where the embedded server's numbers are comparable)

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _server_cpu(server: Any) -> float:
    """The server's CPU so far: the postmaster's own, its exited children's, its live children's."""
    postmaster = psutil.Process(int((Path(server.pgdata) / "postmaster.pid").read_text().split()[0]))
    own = postmaster.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for child in postmaster.children():
        with contextlib.suppress(psutil.Error):  # it exited meanwhile: counted with the exited ones
            used = child.cpu_times()
            total += used.user + used.system
    return total


@contextlib.contextmanager
def measuring_cpu(server: Any) -> Iterator[CpuUse]:
    cpu = CpuUse()
    ours, theirs = _children_cpu(), _server_cpu(server)
    yield cpu
    cpu.ours, cpu.server = _children_cpu() - ours, _server_cpu(server) - theirs


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
            "INSERT INTO observer_ticks (ticker, event_at, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id,"
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


Load = tuple[float, int, int, str, CpuUse]  # seconds, ticks stored, 1-minute bars, how the big file was loaded, CPU


def timed_load(server: Any, root: Path, args: list[str], env: dict[str, str], code_root: Path = ROOT) -> Load:
    """One ingestion command on a fresh database of ``server`` (an embedded one)."""
    server_uri = server.get_uri()
    dsn = fresh_database(server_uri)
    with psycopg.connect(server_uri, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # every measured run starts with nothing left to write from what came before
    os.sync()  # (the generated files included: the first run would otherwise share the disk with their write-back)
    with measuring_cpu(server) as cpu:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "flows.jsonl_ingest", "--root", str(root), *args], cwd=code_root,
                              env={**env, "DATABASE_URL": dsn}, capture_output=True, text=True, timeout=3600)
        seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ingestion failed ({code_root}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    with psycopg.connect(dsn) as conn:
        # A checkout before migration 036 (the previous loader) made its tables under the old names.
        renamed = conn.execute("SELECT to_regclass('observer_ticks') IS NOT NULL").fetchone() == (True,)
        ticks, minutes = ("observer_ticks", "observer_bars_1m") if renamed else ("scalp_ticks", "scalp_1m_bars")
        loaded = conn.execute(f"SELECT count(*) FROM {ticks}").fetchone()[0]  # type: ignore[index]  # noqa: S608 (constant names)
        bars = conn.execute(f"SELECT count(*) FROM {minutes}").fetchone()[0]  # type: ignore[index]  # noqa: S608
    print(f"{code_root.name} {' '.join(args)} {root.name}: {loaded:,} ticks in {seconds:.1f} s = {loaded / seconds:,.0f}/s;"
          f" {cpu.per_tick(loaded)}", flush=True)
    pieces = re.search(r" in (\d+) pieces:", proc.stdout)
    return seconds, loaded, bars, f"{pieces[1]} pieces at once" if pieces else "one process", cpu


def copy_text(path: Path, key: str) -> str:
    """The COPY text the loader sends for a scalp file's ticks (rendered before anything is timed)."""
    from tasks.jsonl.ticks import fast_scalp_row, keyed_copy_lines

    rows = []
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            row = fast_scalp_row(line.rstrip(b"\n"))
            assert row is not None
            rows.append((*row, n))
    return "".join(text for _, text in keyed_copy_lines(rows, key))


_SHARES: list[list[str]] = []  # the floor's COPY texts, one list per process: inherited by fork, never pickled


def _copy_files(dsn: str, share: int) -> None:
    from tasks.jsonl.load import SCALP_COLUMNS

    with psycopg.connect(dsn) as conn:
        for text in _SHARES[share]:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SET LOCAL synchronous_commit = off")
                with cur.copy(f"COPY observer_ticks ({SCALP_COLUMNS}) FROM STDIN") as copy:
                    copy.write(text)


def bare_copy(server: Any, root: Path, processes: int) -> tuple[float, int, CpuUse]:
    """The physical floor: the same rows COPYed into the same table (same indexes) of a fresh database
    by ``processes`` processes (as many as the loader it judges uses), 10,000 rows a transaction; (seconds, ticks, CPU)."""
    import multiprocessing as mp

    from tasks.core.db import open_database
    from tasks.jsonl.partitions import ensure_days

    server_uri = server.get_uri()
    dsn = fresh_database(server_uri)
    with open_database(dsn) as conn:  # the schema, as the loader finds it, and the days' partitions, which the loader makes too
        ensure_days(conn, {START.date() + dt.timedelta(days=k) for k in range(3)})
    files = sorted((root / "scalp").iterdir())
    texts = []  # 10,000 rows a transaction, as the loader's batches
    for f in files:
        lines = copy_text(f, f"scalp/{f.name}").splitlines(keepends=True)
        texts += ["".join(lines[i:i + 10_000]) for i in range(0, len(lines), 10_000)]
    per = -(-len(texts) // processes)  # each process a run of consecutive batches, as a loader's piece of a file
    _SHARES[:] = [texts[i * per:(i + 1) * per] for i in range(processes)]
    with psycopg.connect(server_uri, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()
    # Each process inherits its share (fork) rather than receiving it pickled through a pipe: the
    # floor's own client work is only sending the rows, as in a tuned bulk load.
    workers = [mp.get_context("fork").Process(target=_copy_files, args=(dsn, i)) for i in range(processes) if _SHARES[i]]
    with measuring_cpu(server) as cpu:
        started = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - started
    if any(w.exitcode for w in workers):
        raise SystemExit("a bare COPY process failed")
    _SHARES.clear()
    ticks = sum(t.count("\n") for t in texts)
    print(f"bare COPY {root.name} in {processes} processes: {ticks:,} ticks in {seconds:.1f} s = {ticks / seconds:,.0f}/s;"
          f" {cpu.per_tick(ticks, 'client')}", flush=True)
    return seconds, ticks, cpu


def first_load(work: Path, root: Path, args: list[str], env: dict[str, str]) -> Load:
    """A load as a user meets it the first time: a brand-new cluster, no warm-up."""
    fresh = _new_cluster(work / "first")
    try:
        return timed_load(fresh, root, args, env)
    finally:
        fresh.cleanup()


def first_bare_copy(work: Path, root: Path, processes: int) -> tuple[float, int, CpuUse]:
    """The floor of a first load: the bare COPY into a brand-new cluster of its own, no warm-up either."""
    fresh = _new_cluster(work / "first-copy")
    try:
        return bare_copy(fresh, root, processes)
    finally:
        fresh.cleanup()


def _new_cluster(where: Path) -> Any:
    where.mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return start_server(where)


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
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode kept, as on a user's machine (this sandbox turns it off)
    conc = ["--concurrency", str(args.concurrency)]
    processes = max_pieces(args.concurrency)  # the floor of a big file: as many processes as its loader's pieces
    previous = previous_checkout(args.previous, work / "previous")
    try:
        first_one = first_load(work, work / "one", conc, env)  # before anything else has run on this machine's caches
        first_copy = first_bare_copy(work, work / "one", processes)
        # Not timed: a long-lived server recycles its WAL files, a new one creates gigabytes of
        # them during its first big load; every measured run finds them there.
        timed_load(server, work / "many", conc, env)
        many = timed_load(server, work / "many", conc, env)
        one = timed_load(server, work / "one", conc, env)
        one_process = timed_load(server, work / "one", [*conc, "--split-mb", "0"], env)
        copy_many = bare_copy(server, work / "many", args.concurrency)
        copy_one = bare_copy(server, work / "one", processes)
        old_many = timed_load(server, work / "many", conc, env, previous) if previous else None
        old_one = timed_load(server, work / "one", conc, env, previous) if previous else None
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

    def row(label: str, measured: Load | None, target: str = "") -> str:
        if measured is None:
            return f"| {label} | (no checkout of {args.previous}) | {target} |"
        seconds, loaded, bars, _, cpu = measured
        return (f"| {label} | {seconds:.1f} s = **{loaded / seconds:,.0f} ticks/s** ({loaded:,} ticks, {bars:,} 1-minute bars;"
                f" {cpu.per_tick(loaded)}) | {target} |")

    def floor(label: str, measured: tuple[float, int, CpuUse], judged: Load, target: str = "") -> str:
        seconds, ticks, cpu = measured
        ratio = (judged[1] / judged[0]) / (ticks / seconds)
        return (f"| {label} | {seconds:.1f} s = **{ticks / seconds:,.0f} ticks/s** ({cpu.per_tick(ticks, 'client')});"
                f" the loader: **{ratio:.2f}x** of it | {target} |")

    body = f"""{args.ticks:,} scalp ticks (2 Hz, 40 symbols) in {args.files} files ({size / 1e6:,.0f} MB), and {args.big_ticks:,}
in one file ({big / 1e6:,.0f} MB); `--concurrency {args.concurrency}`, `--batch-size 10000`, embedded PostgreSQL as the project sets it up.
Wall time of the whole command on a fresh database (process start, checkpoints and 1-minute bars included), after one
untimed load of the {args.files} files (a long-lived server recycles its WAL files; a new one first creates them). "Previous" is
the loader at `{args.previous}` (the code the throughput issue was measured on), run from a checkout of that commit on the
same server in the same run. A floor's processes inherit their rows, rendered beforehand (fork): their only work is
sending them. "CPU a tick" is that of the processes the bench started (the loader's, a floor's clients; getrusage) and of
the server's (every PostgreSQL process, from the postmaster's counters); the two share this machine's cores.

| measure | result | target |
|---|---:|---|
{row("many files, this loader", many, ">= 0.8x the bare COPY below")}
{row("many files, previous loader", old_many)}
{row(f"one big file, this loader ({one[3]})", one)}
{row("one big file, this loader in one process (`--split-mb 0`)", one_process)}
{row("one big file, previous loader", old_one)}
{row(f"one big file, first load into a brand-new cluster, no warm-up ({first_one[3]})", first_one, ">= 100,000 ticks/s")}
{floor(f"floor of that first load: bare COPY of its rows into another brand-new cluster ({processes} processes)", first_copy, first_one)}
{floor(f"floor: bare COPY of the many files' rows (same table, same indexes, {args.concurrency} processes)", copy_many, many,
      "loader >= 0.8x")}
{floor(f"floor: bare COPY of the big file's rows ({processes} processes)", copy_one, one)}
| rerun of the many files (every file unchanged) | {rerun.seconds:.1f} s | |
| baseline: `json.loads` + row-at-a-time `executemany` INSERT, {args.sample:,}-tick sample | {base_rate:,.0f} ticks/s | |
"""
    print(body)
    write_section("JSONL ingestion: 5M scalp ticks", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
