"""Prefect as the engine: one big event valuation fanned out over two workers against one worker's
run, and JSONL ingestion orchestrated against plain, each pair measured in the same run.

Everything is local: a ``prefect-local`` server on a throwaway embedded PostgreSQL (which also
holds the data), a process work pool, ``prefect worker start`` processes, a fake Yahoo with 200 ms
latency. The rate budget is set far above what the runs ask (not the bottleneck), and the fake's
request log is checked window by window against it.

    uv run python -m bench.orchestrated [--tickers 1000] [--ticks 1000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.common import ROOT, fresh_database, start_server, write_section
from bench.jsonl_ingest import generate
from test.fake_yahoo import FakeYahoo
from test.prefect_cli import live_worker
from test.rate_helpers import most_in_window

POOL = "bench-pool"
RATE_PER_MIN = 12_000  # 200 a second: far above what 2 x 10 threads at 200 ms latency ask (<= 100 a second)
DEPLOY = """
from prefect import flow
flow.from_source(source={root!r}, entrypoint="flows/deployments.py:event_valuation").to_deployment(
    name="bench", work_pool_name={pool!r}).apply()
"""


def prefect(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"prefect {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


@contextmanager
def prefect_server(work: Path, pgdata: Path) -> Iterator[dict[str, str]]:
    """``prefect-local start`` with its database in the bench's cluster; env with PREFECT_API_URL."""
    env = {**os.environ, "BACKFILL_PREFECT_HOME": str(work / "prefect"), "BACKFILL_PGDATA": str(pgdata), "PREFECT_UI_ENABLED": "false",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false", "PYTHONWARNINGS": "ignore"}
    env.pop("PREFECT_API_URL", None)
    started = subprocess.run([sys.executable, "-m", "flows.prefect_local", "start"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
    if started.returncode != 0:
        raise SystemExit(f"prefect-local start failed:\n{started.stdout}\n{started.stderr}")
    url = next(x for x in started.stdout.splitlines() if x.startswith("export PREFECT_API_URL=")).split("=", 1)[1]
    try:
        yield {**env, "PREFECT_API_URL": url}
    finally:
        subprocess.run([sys.executable, "-m", "flows.prefect_local", "stop"], cwd=ROOT, env=env, capture_output=True, timeout=120)


@contextmanager
def workers(count: int, env: dict[str, str], logs: Path) -> Iterator[None]:
    """``count`` workers of the pool for the block (``prefect worker start``, stopped with Ctrl+C after it)."""
    with ExitStack() as stack:
        for i in range(1, count + 1):
            stack.enter_context(live_worker(env, logs / f"worker{count}-{i}.log", POOL))
        yield


def finished(api: str, run_id: str, timeout: float = 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return dict(run)
        time.sleep(0.5)
    raise SystemExit(f"flow run {run_id} did not finish in {timeout:.0f} s")


def run_seconds(run: dict[str, Any]) -> float:
    """The run's own wall time, start to end, as the server recorded it."""
    from datetime import datetime

    return (datetime.fromisoformat(run["end_time"]) - datetime.fromisoformat(run["start_time"])).total_seconds()


def valuation(api: str, env: dict[str, str], uri: str, work: Path, events: Path, fake: FakeYahoo, *, workers_count: int,
              shards: int) -> tuple[float, float, int, int]:
    """One event valuation deployment run on a fresh database: (run seconds, from submit, requests, most in any 1 s)."""
    dsn = fresh_database(uri)
    fake.reset_log()
    params = {"import_csv": str(events), "as_of": "2025-06-30", "delay": 0.0, "fundamentals": "none", "shards": shards,
              "cache_dir": str(work / f"cache-{workers_count}"), "rate": f"{RATE_PER_MIN}/min"}
    with workers(workers_count, {**env, "DATABASE_URL": dsn}, work):
        submitted = time.perf_counter()
        deployment = httpx.get(f"{api}/deployments/name/event-valuation/bench", timeout=10).json()
        answer = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json={"parameters": params}, timeout=10)
        answer.raise_for_status()
        run = finished(api, answer.json()["id"])
        total = time.perf_counter() - submitted
    if run["state_type"] != "COMPLETED":
        raise SystemExit(f"valuation run ended {run['state_type']}: {run['state'].get('message')}")
    with psycopg.connect(dsn) as conn:
        valued = conn.execute("SELECT count(*) FROM events WHERE valuation_status = 'ok'").fetchone()
    times = [e.at for e in fake.chart_requests()]
    print(f"{workers_count} worker(s), shards={shards}: {valued[0] if valued else 0:,} events valued, run {run_seconds(run):.1f} s,"
          f" {total:.1f} s from submit; {len(times)} requests, at most {most_in_window(times, 1.0)} in a second", flush=True)
    return run_seconds(run), total, len(times), most_in_window(times, 1.0)


def jsonl(uri: str, root: Path, env: dict[str, str], orchestrate: str) -> float:
    """One ingestion command (plain, or as a Prefect flow run) on a fresh database: seconds."""
    dsn = fresh_database(uri)
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # each timed run starts with nothing left to write from the one before
    os.sync()
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "flows.jsonl_ingest", "--root", str(root), "--concurrency", "2",
                           "--orchestrate", orchestrate], cwd=ROOT, env={**env, "DATABASE_URL": dsn}, capture_output=True, text=True,
                          timeout=3600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"jsonl-ingest --orchestrate {orchestrate} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    print(f"jsonl-ingest --orchestrate {orchestrate}: {seconds:.1f} s", flush=True)
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tickers", type=int, default=1000, help="tickers, one event each (default: %(default)s)")
    p.add_argument("--ticks", type=int, default=1_000_000, help="JSONL ticks over 20 files (default: %(default)s)")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-orchestrated-"))
    work.chmod(0o755)
    events = work / "events.csv"
    events.write_text("ticker,event_time,source\n" + "".join(f"T{i:04d},2025-03-05 15:00:00+00:00,news\n" for i in range(args.tickers)),
                      encoding="utf-8")
    generate(work / "jsonl", args.ticks, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = start_server(work)
    try:
        with FakeYahoo(latency=0.2) as fake, prefect_server(work, work / "pg") as env:
            api = env["PREFECT_API_URL"]
            env = {**env, **fake.env(), "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1",
                   "MARKET_BACKFILL_HOME": str(ROOT)}
            prefect("work-pool", "create", POOL, "--type", "process", "--overwrite", env=env)
            made = subprocess.run([sys.executable, "-c", DEPLOY.format(root=str(ROOT), pool=POOL)], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=300)
            if made.returncode != 0:
                raise SystemExit(made.stdout + made.stderr)
            uri = server.get_uri()
            one = valuation(api, env, uri, work, events, fake, workers_count=1, shards=1)
            two = valuation(api, env, uri, work, events, fake, workers_count=2, shards=2)
            plain_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
            jsonl(uri, work / "jsonl", plain_env, "plain")  # not timed: the new cluster's first big load creates its WAL files
            plain = [jsonl(uri, work / "jsonl", plain_env, "plain")]
            orchestrated = [jsonl(uri, work / "jsonl", env, "prefect")]
            plain.append(jsonl(uri, work / "jsonl", plain_env, "plain"))  # alternated, so drift shows as a difference
            orchestrated.append(jsonl(uri, work / "jsonl", env, "prefect"))
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    body = f"""Command: `uv run python -m bench.orchestrated --tickers {args.tickers} --ticks {args.ticks}`. A `prefect-local` server,
a process work pool and `prefect worker start` processes on this machine; a fake Yahoo with 200 ms latency; the
rate budget at {RATE_PER_MIN:,}/min (not the bottleneck).

**Event valuation, {args.tickers:,} tickers (one event each), one deployment run:**

| | run wall time | from submit to done | requests | most in any 1 s (budget {RATE_PER_MIN // 60}) |
|---|---|---|---|---|
| 1 worker, `shards=1` | {one[0]:.1f} s | {one[1]:.1f} s | {one[2]:,} | {one[3]} |
| 2 workers, `shards=2` (fan-out) | {two[0]:.1f} s | {two[1]:.1f} s | {two[2]:,} | {two[3]} |

Fan-out speed-up: **{one[0] / two[0]:.2f}x** (run wall time), {one[1] / two[1]:.2f}x from submit. An orchestrated
valuation runs its groups on threads in one process, so one run uses about one core (the GIL); two shard runs
are two processes. Not 2x here because both workers share this machine's cores with PostgreSQL, the Prefect
server and the fake Yahoo (a Python TLS server answering every request): the figure is what a second process
gives on the same cores, less the parent's and each shard's start-up (a shard run starts a Python process that
imports Prefect and the project) and SPY, which each shard stores for itself. On two machines each shard has
its own cores.

**JSONL ingestion, {args.ticks:,} ticks in 20 files, `--concurrency 2`, fresh database each:**

| plain | orchestrated (a Prefect flow run) | ratio (best of each) |
|---|---|---|
| {plain[0]:.1f} s, {plain[1]:.1f} s | {orchestrated[0]:.1f} s, {orchestrated[1]:.1f} s | {min(orchestrated) / min(plain):.2f}x |

Runs alternate (plain, orchestrated, plain, orchestrated), each on a fresh database after a CHECKPOINT. Both
load in worker processes; the orchestrated run adds the flow run's start-up and its API calls.
"""
    write_section("Orchestrated runs: fan-out over two workers, JSONL orchestrated vs plain", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
