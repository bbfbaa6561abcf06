"""Cold vs warm-cache ETF backfill (12 ETFs) against the fake Yahoo with per-request latency.

Also times the same warm rerun through Prefect: with no server (temporary one) and against a
running local server, so the README's claims about start-up are measured, not guessed.

    uv run python -m bench.etf_cache [--latency 0.25] [--days 60] [--no-prefect]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from bench.common import ROOT, fresh_database, run_module, start_server, write_section
from test.fake_yahoo import FakeYahoo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--latency", type=float, default=0.25, help="seconds added to every fake request (default: %(default)s)")
    p.add_argument("--days", type=int, default=60, help="sessions per ticker (default: %(default)s)")
    p.add_argument("--no-prefect", action="store_true", help="skip the Prefect timings")
    args = p.parse_args(argv)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        work = Path(tempfile.mkdtemp(prefix="bench-etf-"))
        server = start_server(work)
    rows: list[tuple[str, float, int, str]] = []
    with FakeYahoo(latency=args.latency) as fake:
        base_env = {**os.environ, **fake.env(), "PYTHONWARNINGS": "ignore"}
        base_env.pop("PREFECT_API_URL", None)
        cli = ["--days", str(args.days), "--end", "2025-06-30", "--delay", "0", "--rate", "1000000/min"]

        def run(label: str, dsn: str, cache: Path, extra: list[str], env: dict[str, str] | None = None) -> float:
            fake.reset_log()
            t = run_module("flows.etf_backfill", cli + ["--cache-dir", str(cache)] + extra, {**base_env, "DATABASE_URL": dsn,
                                                                                             **(env or {})})
            if t.code != 0:
                print(t.stdout, t.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{label} failed with exit code {t.code}")
            rows.append((label, t.seconds, len(fake.log), t.stdout.strip().splitlines()[-1]))
            print(f"{label:<48} {t.seconds:7.2f} s  {len(fake.log):3d} requests")
            return t.seconds

        cache = work / "cache"
        dsn = fresh_database(server.get_uri())
        cold = run("cold: empty database, empty cache", dsn, cache, ["--orchestrate", "plain"])
        warm_db = run("warm: rows already stored (plain)", dsn, cache, ["--orchestrate", "plain"])
        warm_cache = run("warm: empty database, fresh cache (plain)", fresh_database(server.get_uri()), cache, ["--orchestrate", "plain"])
        prefect_rows = ""
        if not args.no_prefect:
            # No PREFECT_API_URL: the first run starts prefect-local (its database in the bench's own
            # embedded cluster), the second finds it running.
            local = {"BACKFILL_PREFECT_HOME": str(work / "prefect-local"), "BACKFILL_PGDATA": str(work / "pg"),
                     "PREFECT_UI_ENABLED": "false"}
            try:
                run("warm, Prefect, no API URL: starts prefect-local (PostgreSQL)", dsn, cache, ["--orchestrate", "prefect"], env=local)
                run("warm, Prefect, no API URL: prefect-local running", dsn, cache, ["--orchestrate", "prefect"], env=local)
            finally:
                from flows.orchestration.server import stop_server

                stop_server(work / "prefect-local")
            port = _free_port()
            home = work / "prefect-home"
            penv = {**base_env, "PREFECT_HOME": str(home), "PREFECT_SERVER_API_PORT": str(port), "PREFECT_UI_ENABLED": "false"}
            proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--port", str(port)], cwd=ROOT, env=penv,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                url = f"http://127.0.0.1:{port}/api"
                _wait_health(url)
                run("warm, Prefect, `prefect server start` (SQLite) running", dsn, cache, ["--orchestrate", "prefect"],
                    env={"PREFECT_API_URL": url, "PREFECT_HOME": str(home)})
            finally:
                proc.terminate()
                proc.wait(30)
            prefect_rows = "yes"
    server.cleanup()
    shutil.rmtree(work, ignore_errors=True)

    table = "| run | wall time | network requests | summary |\n|---|---:|---:|---|\n"
    table += "".join(f"| {label} | {secs:.2f} s | {reqs} | `{summary}` |\n" for label, secs, reqs, summary in rows)
    body = (
        f"12 ETFs x {args.days} sessions, fake Yahoo latency {args.latency * 1000:.0f} ms per request, `--delay 0`.\n\n{table}\n"
        f"Cold / warm (rows stored): **{cold / warm_db:.1f}x**; cold / warm (cache only): **{cold / warm_cache:.1f}x**.\n"
        + ("The Prefect rows show what orchestration adds to the same warm rerun.\n" if prefect_rows else "")
    )
    print(body)
    write_section("ETF backfill: cold vs warm cache", body)
    return 0


def _wait_health(url: str, timeout: float = 90) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:  # noqa: S310 (loopback)
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("Prefect server did not become healthy")


if __name__ == "__main__":
    sys.exit(main())
