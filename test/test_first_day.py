"""The first day on a new machine: commands started at once on a cluster that does not exist yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg

from test.fix_yahoo import ROOT, cli_env
from test.test_pg_tcp import _stop


def test_commands_started_at_once_on_a_new_embedded_cluster_all_succeed(cluster_dir: Path) -> None:
    """Five commands at once, before any cluster exists: one makes, starts and tunes it (a restart)
    while the others wait; none is cut off by that restart or fails on the database's creation."""
    pgdata = cluster_dir / "pgdata"
    env = cli_env(None, None, BACKFILL_PGDATA=str(pgdata))
    (cluster_dir / "data" / "scalp").mkdir(parents=True)
    commands = ([[sys.executable, "-m", "flows.backfill_status", "--json"]] * 3
                + [[sys.executable, "-m", "flows.jsonl_ingest", "--root", str(cluster_dir / "data")]] * 2)  # these migrate too
    try:
        procs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for argv in commands]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        assert [code for code, _ in results] == [0] * 5, results
        assert not [err for _, err in results if "Traceback" in err or "UniqueViolation" in err], results
        uri = f"postgresql://postgres@/market_data?host={Path((pgdata / 'postmaster.pid').read_text().splitlines()[4])}"
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT count(*) FROM market_backfill_migrations").fetchone()[0] > 10  # type: ignore[index]
    finally:
        _stop(pgdata)
