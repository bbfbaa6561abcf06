"""Where the tables live: the data (bars, ticks, events, analytics, the views) in the connection's
schema, ``public`` unless ``DATABASE_URL`` names another; the machinery (runs, budgets,
checkpoints, migrations) and the partitions behind the partitioned tables in a schema of their own
beside it, so a catalog browser, ``\\dt`` or a BI tool lists the data alone. Our connections put
both on their search path; a user's queries name the data as before.

Data schema ``public``: ``backfill_internal``; any other schema ``S``: ``S_internal`` (two installs
in two schemas of one database keep their machinery apart)."""

from __future__ import annotations

from typing import Any

import psycopg

PUBLIC_INTERNAL = "backfill_internal"


def internal_schema(data_schema: str) -> str:
    """The machinery's schema for the data in ``data_schema`` (the rule migration 030 applies too)."""
    return PUBLIC_INTERNAL if data_schema == "public" else f"{data_schema}_internal"


def _data_schema(conn: psycopg.Connection[Any]) -> str | None:
    """``conn``'s data schema: the first schema of its search path that exists (None: none does)."""
    row = conn.execute("SELECT current_schema()").fetchone()
    return str(row[0]) if row and row[0] is not None else None


def machinery_schema(conn: psycopg.Connection[Any]) -> str | None:
    """The machinery's schema beside ``conn``'s data schema; None when no schema of its path exists."""
    data = _data_schema(conn)
    return internal_schema(data) if data is not None else None


def use_schemas(conn: psycopg.Connection[Any]) -> str | None:
    """Put the machinery's schema on ``conn``'s search path after its data schema (the first schema
    of the path that exists); returns the machinery's schema, None when no schema of the path exists.
    Committed at once when ``conn`` was idle outside autocommit (a setting made in a transaction that
    is rolled back later is undone); inside a caller's transaction (a dry run's) it lasts as long."""
    idle = not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    data = _data_schema(conn)
    if data is None:
        return None
    internal = internal_schema(data)
    conn.execute("SELECT set_config('search_path', format('%%I, %%I', %s::text, %s::text), false)", (data, internal))
    if idle:
        conn.commit()
    return internal
