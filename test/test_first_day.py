"""The first day on a new machine: commands started at once on a cluster that does not exist yet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from test.fix_yahoo import ROOT, cli_env
from test.test_pg_tcp import _stop


def test_commands_started_at_once_on_a_new_embedded_cluster_all_succeed(cluster_dir: Path) -> None:
    """Five commands at once, before any cluster exists: one makes, starts and tunes it (a restart)
    while the others wait; none is cut off by that restart or fails on the database's creation.
    Started from another folder, they find the data home (``BACKFILL_HOME``; by default the
    checkout), not a new database in the current folder, and the one that made it says where."""
    home, elsewhere = cluster_dir / "home", cluster_dir / "elsewhere"
    pgdata = home / ".pgdata"
    env = cli_env(None, None, BACKFILL_HOME=str(home))
    env.pop("BACKFILL_PGDATA", None)
    (cluster_dir / "data" / "scalp").mkdir(parents=True)
    elsewhere.mkdir()
    commands = ([[sys.executable, "-m", "flows.backfill_status", "--json"]] * 3
                + [[sys.executable, "-m", "flows.jsonl_ingest", "--root", str(cluster_dir / "data")]] * 2)  # these migrate too
    try:
        procs = [subprocess.Popen(argv, cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for argv in commands]
        results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
        assert [code for code, _ in results] == [0] * 5, results
        assert not [err for _, err in results if "Traceback" in err or "UniqueViolation" in err], results
        said = [err for _, err in results if f"made a new embedded PostgreSQL for the data in {pgdata}" in err]
        assert len(said) == 1, results
        assert not (elsewhere / ".pgdata").exists() and (pgdata / "PG_VERSION").is_file()
        uri = f"postgresql://postgres@/market_data?host={Path((pgdata / 'postmaster.pid').read_text().splitlines()[4])}"
        with psycopg.connect(uri) as conn:
            assert conn.execute("SELECT count(*) FROM backfill_internal.market_backfill_migrations").fetchone()[0] > 10  # type: ignore[index]
    finally:
        _stop(pgdata)


def test_the_data_home_is_the_checkout_whatever_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.config import data_home, default_cache_dir, pgdata
    from flows.orchestration.server import default_home

    for name in ("BACKFILL_HOME", "BACKFILL_PGDATA", "BACKFILL_CACHE_DIR", "BACKFILL_PREFECT_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert (data_home(), pgdata(), default_cache_dir(), default_home()) == (ROOT, ROOT / ".pgdata", ROOT / ".cache", ROOT / ".prefect")
    monkeypatch.setenv("BACKFILL_PGDATA", "mine")  # set on its own, relative: the user's folder, as typed
    assert pgdata() == Path("mine")
