"""Staggered runner overhead: 11 sector ETFs with a small delay against the fake Yahoo with latency.

Reports wall time versus the floor (the configured waits plus the network time of the requests
made) at the given delay and at twice it (so whether the overhead grows with the delay is
measured, not said), and a ``--skip-existing`` rerun's time and request count.

    uv run python -m bench.staggered [--delay-minutes 0.02] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from bench.common import fresh_database, run_module, start_server, write_section
from test.fake_yahoo import FakeYahoo


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--delay-minutes", type=float, default=0.02, help="runner delay between fetches (default: %(default)s)")
    p.add_argument("--latency", type=float, default=0.2, help="seconds added to each fake request (default: %(default)s)")
    p.add_argument("--days", type=int, default=60, help="sessions per ticker (default: %(default)s)")
    args = p.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tempfile.mkdtemp(prefix="bench-stag-"))
        server = start_server(work)
    delays = (args.delay_minutes, 2 * args.delay_minutes)  # the overhead is measured at two delays: does it grow with it?
    colds = []
    with FakeYahoo(latency=args.latency) as fake:
        for i, delay in enumerate(delays):
            env = {**os.environ, **fake.env(), "PYTHONWARNINGS": "ignore", "DATABASE_URL": fresh_database(server.get_uri()),
                   "BACKFILL_ORCHESTRATE": "plain"}
            cli = ["--days", str(args.days), "--end", "2025-06-30", "--delay", f"{delay}m", "--cache-dir",
                   str(work / f"cache{i}")]
            fake.reset_log()
            colds.append((delay, run_module("flows.staggered_sector_backfill", cli, env), len(fake.log)))
        fake.reset_log()
        rerun = run_module("flows.staggered_sector_backfill", [*cli, "--skip-existing"], env)
        rerun_requests = len(fake.log)
    server.cleanup()
    shutil.rmtree(work, ignore_errors=True)
    if any(c.code != 0 for _, c, _ in colds) or rerun.code != 0:
        print(*(c.stdout + c.stderr for _, c, _ in colds), rerun.stdout, rerun.stderr, file=sys.stderr)
        return 1
    rows, overheads = "", []
    for delay, cold, requests in colds:
        waits = 10 * delay * 60
        network = requests * args.latency
        floor = waits + network
        overheads.append(cold.seconds - floor)
        rows += (f"| cold run, `--delay-minutes {delay:g}` | {cold.seconds:.2f} s | {requests} "
                 f"| {floor:.2f} s ({waits:.1f} + {network:.1f}) | {cold.seconds - floor:.2f} s | {cold.seconds / floor:.2f}x |\n")
    body = (
        f"11 sector ETFs x {args.days} sessions, fake latency {args.latency * 1000:.0f} ms per request, each cold run on a fresh "
        "database and cache.\n\n"
        "| run | wall time | requests | floor (waits + network) | overhead (wall - floor) | ratio |\n|---|---:|---:|---:|---:|---:|\n"
        + rows
        + f"| `--skip-existing` rerun | {rerun.seconds:.2f} s | {rerun_requests} | 0 s | - | - |\n\n"
        f"Doubling the delay changed the overhead by {overheads[1] - overheads[0]:+.2f} s "
        f"({overheads[0]:.2f} s -> {overheads[1]:.2f} s) while the waits grew by {10 * delays[0] * 60:.1f} s.\n"
    )
    print(body)
    write_section("Staggered sector runner: overhead over the configured waits", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
