"""Prefect's server for tests: the project's own ``prefect-local`` command, its database in the
test PostgreSQL, one server per test process (started once, reused, stopped at the end)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from test.fix_yahoo import ROOT
from test.in_process import run_main
from test.prefect_http import exported
from test.prefect_server import free_port


def local_prefect_env(home: Path, pg_server: tuple[str, Path | None], *, own_database: bool = False) -> dict[str, str]:
    """Where ``prefect-local`` keeps its state and its database for this test process.

    The embedded test cluster is used the way a user's is (``BACKFILL_PGDATA``, database
    ``prefect``); a server given by ``TEST_DATABASE_URL``, or ``own_database``, gets a database of
    its own (a second Prefect server beside the session's must not share its tables).
    """
    # A run waiting for its deployment's concurrency slot is tried again after 1 s, not Prefect's 30.
    env = {"BACKFILL_PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1"}
    dsn, pgdata = pg_server
    if pgdata is not None and not own_database:
        env["BACKFILL_PGDATA"] = str(pgdata)
        return env
    import psycopg
    from psycopg import sql

    name = f"prefect_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(dsn)  # a URI (the embedded server's, or TEST_DATABASE_URL): same server, that database
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = urlunsplit(("postgresql+asyncpg", parts.netloc, f"/{name}", parts.query, ""))
    return env


def prefect_local(action: str, env: dict[str, str], *args: str, timeout: float = 180,
                  in_process: bool = False) -> subprocess.CompletedProcess[str]:
    """``prefect-local ACTION ARGS``, as a user types it (``in_process``: its ``main`` in this process,
    ``test/in_process.py``: for a refusal that starts nothing, and for the fixtures' ``stop``, whose
    process behaviour test_prefect_local.py and the blip test keep testing as a process)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "PREFECT_API_AUTH_STRING"))}
    full.update(env)
    if in_process:
        code, out, err = run_main("flows.prefect_local", [action, *args], full, ROOT)
        return subprocess.CompletedProcess([action, *args], code, out, err)
    return subprocess.run([sys.executable, "-m", "flows.prefect_local", action, *args], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def prefect_env(tmp_path_factory: pytest.TempPathFactory, pg_server: tuple[str, Path | None]) -> Iterator[dict[str, str]]:
    """Env for a process that uses this test process's local Prefect server (started on first use).

    Its scheduler is off: these tests start runs by hand, and a cron that comes due mid-test would
    hand the worker a run nobody asked for. test_schedules.py watches a scheduler of its own. Its
    database is its own: the test processes' servers must not see each other's runs.
    """
    env = {**local_prefect_env(tmp_path_factory.mktemp("prefect-local"), pg_server, own_database=True),
           "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}
    yield env
    prefect_local("stop", env, in_process=True)


@pytest.fixture(scope="session")
def prefect_api(prefect_env: dict[str, str]) -> dict[str, str]:
    """The same server, started now; env with ``PREFECT_API_URL`` and ``PREFECT_API_AUTH_STRING`` set as
    `prefect-local start` prints them."""
    done = prefect_local("start", prefect_env)
    assert done.returncode == 0, done.stdout + done.stderr
    return {**prefect_env, **exported(done.stdout)}


@pytest.fixture
def own_prefect_server(tmp_path: Path, pg_server: tuple[str, Path | None]) -> Iterator[dict[str, str]]:
    """A ``prefect-local`` server of this test's own (own home, own database; its scheduler on, with
    a 1 s loop); env with ``PREFECT_API_URL`` and its secret set as ``prefect-local start`` prints them."""
    env = {**local_prefect_env(tmp_path / "prefect-home", pg_server, own_database=True),
           "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"}
    # A port of its own: 4200 is whichever test server came first, and may be taken while this one
    # is down (a restart then comes back on the port this home had last: prefect-local's last-port).
    started = prefect_local("start", env, "--port", str(free_port()))
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        yield {**env, **exported(started.stdout)}
    finally:
        prefect_local("stop", env, in_process=True)
