"""The shared rate budget: how exactly it holds its rate across processes, and what a slot costs.

Two worker processes with four threads each take slots from one budget (a fresh embedded
database) at ``--rate`` per minute together. Reported: the achieved aggregate rate, the most
grants seen in any one-second window (the budget allows rate/60, plus one at a window's edge),
and, as the baseline in the same run, the cost of one reservation when the rate does not bind
(one UPDATE round trip), against a process-local lock doing the same bookkeeping. Then the same
load through Prefect's global rate limit (bench/prefect_rate_limit.py), for the choice between them.

    uv run python -m bench.rate_budget [--rate 1200] [--seconds 6]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from bench.common import fresh_database, run_module, start_server, write_section
from tasks.core.db import migrate
from tasks.sources.budget import RateBudget
from tasks.sources.spacing import MinIntervalGate
from test.rate_helpers import grab, most_in_window


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate", type=float, default=1200.0, help="budget in requests per minute (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--reservations", type=int, default=3000, help="for the cost measurement (default: %(default)s)")
    args = p.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tempfile.mkdtemp(prefix="bench-budget-"))
        server = start_server(work)
    import psycopg

    dsn = fresh_database(server.get_uri())
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    per_thread = max(1, int(args.rate / 60 * args.seconds / 8))  # 2 processes x 4 threads: about --seconds at the rate
    procs = [ctx.Process(target=grab, args=(dsn, args.rate, per_thread, 4, out)) for _ in range(2)]
    for proc in procs:
        proc.start()
    times = [t for _ in procs for t in out.get(timeout=120)]
    for proc in procs:
        proc.join()
    span = max(times) - min(times)
    achieved = (len(times) - 1) / span * 60
    peak = most_in_window(times, 1.0)

    unbound = RateBudget(dsn, "cost", per_min=1e8)
    unbound.acquire()
    started = time.perf_counter()
    for _ in range(args.reservations):
        unbound.acquire()
    per_slot_ms = (time.perf_counter() - started) / args.reservations * 1000
    local = MinIntervalGate(0.0)
    started = time.perf_counter()
    for _ in range(args.reservations):
        local.acquire()
    local_us = (time.perf_counter() - started) / args.reservations * 1e6
    server.cleanup()
    shutil.rmtree(work, ignore_errors=True)

    # The same load through Prefect's global rate limit, on a server with its default SQLite backend
    # and on the project's prefect-local server with its database in PostgreSQL.
    prefect_rows = ""
    measured: dict[str, tuple[float, int]] = {}
    for backend in ("sqlite", "postgres"):
        prefect = run_module("bench.prefect_rate_limit", ["--rate", str(args.rate), "--count", str(per_thread), "--backend", backend],
                             dict(os.environ), timeout=900)
        found = dict(re.findall(r"(\w+)=([\d.]+)", prefect.stdout))
        if prefect.code != 0 or "grants" not in found:
            prefect_rows += f"| Prefect rate limit ({backend}) | failed to run: {(prefect.stderr or prefect.stdout).strip()[-200:]} |\n"
            continue
        p_rate = (float(found["grants"]) - 1) / float(found["span"]) * 60
        measured[backend] = (p_rate, int(found["window_max"]))
        prefect_rows += (f"| Prefect rate limit, {backend} server: achieved rate | {p_rate:.0f}/min "
                         f"({p_rate / args.rate:.1%} of the limit) |\n"
                         f"| Prefect rate limit, {backend} server: most grants in any 1 s window | {found['window_max']} |\n")
    verdict = ", ".join(f"{b}: {r / args.rate:.0%} of its rate, up to {w} grants in a second" for b, (r, w) in measured.items())
    body = (
        f"Two processes x 4 threads sharing one budget of {args.rate:.0f}/min for {args.seconds:.0f} s (fresh embedded PostgreSQL 18):\n\n"
        f"| measure | value |\n|---|---|\n"
        f"| grants | {len(times)} |\n"
        f"| achieved aggregate rate | {achieved:.0f}/min ({achieved / args.rate:.1%} of the budget) |\n"
        f"| most grants in any 1 s window | {peak} (budget: {args.rate / 60:.0f}) |\n"
        f"| cost of one reservation, rate not binding (baseline: in-process lock) | {per_slot_ms:.2f} ms ({local_us:.1f} µs) |\n"
        + prefect_rows
        + f"\nIn this run: our budget {achieved / args.rate:.0%} of its rate, at most {peak} grants in a second; "
        f"Prefect's limit, {verdict}.\n"
    )
    print(body)
    write_section("Shared rate budget", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
