"""A new embedded cluster is made with the bulk-load settings; one made before they existed gets
them once, said, without cutting off anybody connected; a value someone chose is kept."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tasks.core.db import start_embedded_server
from tasks.core.server_settings import STOCK, bulk_load_settings, restart_server


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Any, Path]]:
    # Not under pytest's temp root: a second pytest session on the machine resets that root to mode
    # 0700, and the server runs as another system user, which would then lose its data directory.
    work = Path(tempfile.mkdtemp(prefix="market-backfill-test-older-"))
    work.chmod(0o755)
    pgdata = work / "pg"
    server = start_embedded_server(pgdata, cleanup_mode="delete")
    try:
        yield server, pgdata
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def older_cluster(cluster: tuple[Any, Path]) -> tuple[Any, Path]:
    """A cluster at initdb's stock settings, as one made before they were raised, left running."""
    server, _ = cluster
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM RESET ALL")
    restart_server(server)
    return cluster


class _Said(logging.Handler):
    """What ``backfill.db`` says, caught on that logger itself (the CLI's setup stops it propagating)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def said() -> Iterator[_Said]:
    logger = logging.getLogger("backfill.db")
    handler, level = _Said(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _shown(uri: str) -> dict[str, str]:
    with psycopg.connect(uri) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in STOCK}  # type: ignore[index]


def _gb(text: str) -> str:
    return text if not text.endswith("MB") or int(text[:-2]) % 1024 else f"{int(text[:-2]) // 1024}GB"


def _quarter_of_memory() -> str:
    megabytes = psutil.virtual_memory().total // 4 // 2**20
    return _gb(f"{min(1024, max(128, megabytes))}MB")


def test_a_new_cluster_is_made_for_bulk_loads(cluster_dir: Path) -> None:
    server = start_embedded_server(cluster_dir / "pg", cleanup_mode="delete")
    try:
        assert _shown(server.get_uri()) == {"shared_buffers": _quarter_of_memory(), "max_wal_size": "4GB", "wal_init_zero": "off"}
    finally:
        server.cleanup()


def test_stock_settings_are_raised_with_one_restart_and_said(older_cluster: tuple[Any, Path], said: _Said) -> None:
    server, pgdata = older_cluster
    assert _shown(server.get_uri()) == STOCK
    again = start_embedded_server(pgdata)  # what every command does first
    wanted = bulk_load_settings()
    assert _shown(again.get_uri()) == {name: _gb(value) for name, value in wanted.items()}
    assert said.lines == [f"embedded PostgreSQL tuned for bulk loads (shared_buffers 128MB -> {wanted['shared_buffers']}, max_wal_size 1GB"
                    " -> 4GB, wal_init_zero on -> off) and restarted once to apply it (no other client was connected)"]
    said.lines.clear()
    start_embedded_server(pgdata)
    assert said.lines == []  # once only


def test_a_connected_client_is_not_cut_off(older_cluster: tuple[Any, Path], said: _Said) -> None:
    server, pgdata = older_cluster
    with psycopg.connect(server.get_uri(), autocommit=True) as other:
        pid = other.info.backend_pid
        start_embedded_server(pgdata)
        assert other.execute("SELECT pg_backend_pid()").fetchone() == (pid,)  # the same session, still there
        # the reload's part
        assert _shown(server.get_uri()) == {"shared_buffers": STOCK["shared_buffers"], "max_wal_size": "4GB", "wal_init_zero": "off"}
    (line,) = said.lines
    assert "shared_buffers takes effect when the server next starts (1 other client(s) connected now" in line


def test_a_chosen_value_is_kept(older_cluster: tuple[Any, Path]) -> None:
    server, pgdata = older_cluster
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_buffers = '160MB'")
        conn.execute("ALTER SYSTEM SET wal_init_zero = on")  # PostgreSQL's default, but chosen
    restart_server(server)
    again = start_embedded_server(pgdata)
    assert _shown(again.get_uri()) == {"shared_buffers": "160MB", "max_wal_size": "4GB", "wal_init_zero": "on"}
