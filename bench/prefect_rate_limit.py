"""Prefect's global rate limit under the same load as our budget (for bench/rate_budget.py).

Starts a Prefect server (default SQLite backend) in a temporary home, creates a global concurrency
limit with slot decay (Prefect's rate limit), and has 2 processes x 4 threads call
``prefect.concurrency.sync.rate_limit(name, strict=True)`` as fast as they may. Prints one line
``grants=N span=S window_max=M`` for the caller to report.

    uv run python -m bench.prefect_rate_limit --rate 1200 --count 20
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from test.prefect_server import free_port, server_env, start_prefect_server
from test.test_rate_budget import grant_times, most_in_window

NAME = "bench-yahoo"


def _grab(count: int, threads: int, out: Any) -> None:
    from prefect.concurrency.sync import rate_limit

    def take() -> None:
        rate_limit(NAME, occupy=1, strict=True)

    take()  # warm up the client (imports, connection) before timing
    out.put(grant_times(take, count, threads))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate", type=float, default=1200.0, help="per minute (default: %(default)s)")
    p.add_argument("--count", type=int, default=20, help="grants per thread (default: %(default)s)")
    args = p.parse_args(argv)
    os.environ.update(server_env(Path(tempfile.mkdtemp(prefix="bench-prefect-")), free_port()))
    server = start_prefect_server(dict(os.environ), Path.cwd())
    try:
        per_second = args.rate / 60
        subprocess.run([sys.executable, "-m", "prefect", "global-concurrency-limit", "create", NAME, "--limit", str(max(1, int(per_second))),
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
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
