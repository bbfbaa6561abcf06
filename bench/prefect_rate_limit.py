"""Prefect's global rate limit under the same load as our budget (for bench/rate_budget.py).

Starts a Prefect server in a temporary home, with its default SQLite backend or (``--backend
postgres``) the project's ``prefect-local`` server on a throwaway embedded PostgreSQL, creates a
global concurrency limit with slot decay (Prefect's rate limit), and has 2 processes x 4 threads
call ``prefect.concurrency.sync.rate_limit(name, strict=True)`` as fast as they may. Prints one
line ``grants=N span=S window_max=M`` for the caller to report.

    uv run python -m bench.prefect_rate_limit --rate 1200 --count 20 [--backend postgres]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from test.prefect_server import free_port, server_env, start_prefect_server
from test.rate_helpers import grant_times, most_in_window

NAME = "bench-yahoo"


def _grab(count: int, threads: int, out: Any) -> None:
    from prefect.concurrency.sync import rate_limit

    def take() -> None:
        rate_limit(NAME, occupy=1, strict=True)

    take()  # warm up the client (imports, connection) before timing
    out.put(grant_times(take, count, threads))


def _start_server(backend: str, work: Path) -> Callable[[], None]:
    """Start the server for ``backend``, export its API URL to this process; returns how to stop it."""
    if backend == "sqlite":
        os.environ.update(server_env(work / "home", free_port()))
        server = start_prefect_server(dict(os.environ), Path.cwd())

        def stop_sqlite() -> None:
            server.terminate()
            server.wait(timeout=30)

        return stop_sqlite
    from bench.common import start_server as start_pg
    from flows.orchestration.server import start_server, stop_server

    os.environ.update({"BACKFILL_PGDATA": str(work / "pg"), "PREFECT_UI_ENABLED": "false"})
    os.environ.pop("PREFECT_API_DATABASE_CONNECTION_URL", None)
    info, _ = start_server(work / "home")
    os.environ["PREFECT_API_URL"] = info.api_url

    def stop_postgres() -> None:
        stop_server(work / "home")
        start_pg(work).cleanup()

    return stop_postgres


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate", type=float, default=1200.0, help="per minute (default: %(default)s)")
    p.add_argument("--count", type=int, default=20, help="grants per thread (default: %(default)s)")
    p.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite",
                   help="the Prefect server's database (default: %(default)s)")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-prefect-"))
    stop = _start_server(args.backend, work)
    try:
        per_second = args.rate / 60
        # Like for like with our budget, which grants one slot every 60/rate seconds and never a
        # burst: one slot, freed at the rate (a limit of per_second slots would allow a one-second
        # burst, which the count of grants in any second then holds against it).
        limit = "1"
        subprocess.run([sys.executable, "-m", "prefect", "global-concurrency-limit", "create", NAME, "--limit", limit,
                        "--slot-decay-per-second", str(per_second)], check=True, capture_output=True)
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        procs = [ctx.Process(target=_grab, args=(args.count, 4, out)) for _ in range(2)]
        for proc in procs:
            proc.start()
        times = [t for _ in procs for t in out.get(timeout=600)]
        for proc in procs:
            proc.join()
        span = max(times) - min(times)
        print(f"grants={len(times)} span={span:.2f} window_max={most_in_window(times, 1.0)}")
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
