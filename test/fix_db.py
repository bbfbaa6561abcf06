"""A real PostgreSQL for tests: the embedded server (or ``TEST_DATABASE_URL``), one fresh database per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path | None]]:
    """(DSN of a server whose ``postgres`` database we may use, its data directory if embedded)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url, None
        return
    from tasks.core.db import start_embedded_server

    # Not under pytest's own temp root: a second pytest session on the machine resets that root to
    # mode 0700, and the server runs as another system user, which would then lose its data directory.
    work = Path(tempfile.mkdtemp(prefix="market-backfill-test-pg-"))
    pgdata = work / "data"
    server = start_embedded_server(pgdata, cleanup_mode="delete")
    _SERVER_LOGS.append(Path(server.log))
    yield server.get_uri(), pgdata
    server.cleanup()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """A folder for a test's own PostgreSQL cluster, outside pytest's temp root: another pytest run
    on the machine resets that root to mode 0700, and the server (another system user) would lose it."""
    work = Path(tempfile.mkdtemp(prefix="market-backfill-test-cluster-"))
    work.chmod(0o755)
    yield work
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_dsn(pg_server: tuple[str, Path | None]) -> str:
    return pg_server[0]


_SERVER_LOGS: list[Path] = []


def server_log_tail(lines: int = 40) -> str:
    """The end of the session server's log (for a failure that finds the server gone)."""
    out = []
    for log in _SERVER_LOGS:
        files = sorted(log.rglob("*")) if log.is_dir() else [log]
        for f in files:
            if f.is_file():
                out.extend(f.read_text(errors="replace").splitlines()[-lines:])
    return "\n".join(out[-lines:])


@contextlib.contextmanager
def fresh_database(pg_server_dsn: str, template: str | None = None) -> Iterator[str]:
    """A brand-new database on the test server, empty or a copy of ``template`` (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(pg_server_dsn, autocommit=True)
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"the test PostgreSQL server is down: {exc}\n--- its log ---\n{server_log_tail()}") from exc
    with conn:
        if template is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        else:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    params = conninfo_to_dict(pg_server_dsn)
    params["dbname"] = name
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def migrated_template(pg_server_dsn: str) -> Iterator[str]:
    """A database the tool has migrated, made once per test process: ``dsn`` copies it. Migrating an
    empty database costs 0.2-0.5 s of CPU (the server's and the client's), and 300-odd tests a run
    each began with one (bench/NOTES.md, session 21). The first run on an empty database keeps tests
    of its own (marked ``empty_database``: each command's first, several at once, upgrades, refusals
    that must create nothing). Closed to connections once made: a copy needs its template unused."""
    from tasks.core.db import migrate

    with fresh_database(pg_server_dsn) as url:
        name = str(conninfo_to_dict(url)["dbname"])
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn)
        with psycopg.connect(pg_server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        yield name


@pytest.fixture
def dsn(request: pytest.FixtureRequest, pg_server_dsn: str) -> Iterator[str]:
    """A database of this test's own (dropped afterwards): as the tool leaves a database it has
    migrated and nothing more (a copy of ``migrated_template``), or, for a test marked
    ``empty_database``, brand-new and empty, as a user's first run finds it."""
    empty = request.node.get_closest_marker("empty_database") is not None
    template = None if empty else request.getfixturevalue("migrated_template")
    with fresh_database(pg_server_dsn, template) as url:
        yield url


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test database, migrated."""
    from tasks.core.db import migrate

    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        yield conn


def table_rows(dsn: str, table: str, columns: str = "ticker, trade_date, open, high, low, close, adj_close, volume") -> list[tuple[Any,
                                                                                                                                   ...]]:
    """All rows of a table (``name`` or ``schema.name``) in key order (for comparing a run with a clean run)."""
    from tasks.core.db import connect

    with connect(dsn) as conn:  # as the tool connects: its machinery's schema on the path
        exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        if not exists or exists[0] is None:
            return []
        query = sql.SQL("SELECT {} FROM {} ORDER BY 1, 2").format(sql.SQL(columns), sql.Identifier(*table.split(".")))  # noqa: S608
        return list(conn.execute(query))


def unused_path(tmp: Path) -> Path:
    return tmp / uuid.uuid4().hex[:8]


def end_cooldown(dsn: str, budget: str = "yahoo") -> None:
    """End a rate budget's cool-down now, as if its advised wait had passed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE backfill_internal.rate_budgets SET cooldown_until = now() - interval '1 second' WHERE name = %s", (budget,))


def query_rows(dsn: str, queries: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Each query's rows, sorted (for comparing two databases whatever order rows were stored in); the
    machinery's tables by name, as the tool connects."""
    from tasks.core.db import connect

    with connect(dsn) as conn:
        return {name: sorted(conn.execute(query)) for name, query in queries.items()}  # type: ignore[arg-type]


def migrate_before(conn: psycopg.Connection[Any], version: str) -> None:
    """The schema as it was before migration ``version`` (e.g. "013"): the earlier ones applied and
    recorded, in the caller's transaction (to set up data that an upgrade then meets)."""
    from tasks.core.sql_files import migrations

    conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
    for name, text in migrations():
        if name.startswith(version):
            break
        conn.execute(text)  # type: ignore[arg-type]
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (name,))
