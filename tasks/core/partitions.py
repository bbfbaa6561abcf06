"""Range partitions made on demand: a table made with the parent's columns, then attached, which
takes only a SHARE UPDATE EXCLUSIVE lock on the parent, so writers of other ranges go on. They are
made in the machinery's schema (``tasks/core/schemas.py``): users query the parent. One
process at a time makes partitions (two would race on a name). Used by the ticks' day partitions
(``tasks/jsonl/partitions.py``) and the intraday bars' month partitions (``tasks/prices/intraday_store.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg import sql

from tasks.core.schemas import PUBLIC_INTERNAL, machinery_schema

_CREATE_LOCK = 0x4A53504B
RETENTION_MARK = "market-backfill retention: detached to be dropped"


def make_partitions(conn: psycopg.Connection[Any], wanted: dict[str, tuple[str, dt.datetime, dt.datetime]]) -> list[str]:
    """Make the partitions ``wanted`` (name → parent table, start, end) where missing; returns the
    names made. ``conn`` must be in autocommit mode (each is made and attached in its own short
    transaction, never inside a caller's batch)."""
    if not wanted:
        return []
    # Missing: no such table, or one not (or no longer wholly) attached: detached by hand, or by a
    # retention run killed before its drop. Such a table is attached again, its rows with it.
    missing = [r[0] for r in conn.execute(
        "SELECT n FROM unnest(%s::text[]) n WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = to_regclass(n)"
        " AND NOT i.inhdetachpending)", (list(wanted),))]
    made: list[str] = []
    if not missing:
        return made
    # A session lock, taken before each transaction: a transaction's start is where this backend
    # catches up with tables other sessions made (a name looked up after a lock taken inside the
    # transaction can still miss one made a moment ago).
    conn.execute("SELECT pg_advisory_lock(%s)", (_CREATE_LOCK,))
    try:
        for name in sorted(missing):
            if attach_partition(conn, name, *wanted[name]):
                made.append(name)
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_CREATE_LOCK,))
    return made


def attach_partition(conn: psycopg.Connection[Any], name: str, table: str, start: dt.datetime, end: dt.datetime) -> bool:
    """Make ``table``'s partition ``name`` for [start, end) where it is missing, or attach again the
    table of that name that is detached (its rows come back with it; a detach a killed run began is
    finished first); False when another process did it a moment ago. Under the creation lock."""
    state = conn.execute("SELECT (SELECT NOT i.inhdetachpending FROM pg_inherits i WHERE i.inhrelid = to_regclass(%s)"
                         " AND i.inhparent = to_regclass(%s)), to_regclass(%s) IS NOT NULL", (name, table, name)).fetchone()
    attached, exists = state if state else (None, False)
    if attached:
        return False  # another process made it a moment ago
    target, part = sql.Identifier(table), sql.Identifier(machinery_schema(conn) or PUBLIC_INTERNAL, name)
    if attached is False:  # DETACH ... CONCURRENTLY begun by a run that was killed
        conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} FINALIZE").format(target, part))
    with conn.transaction():
        if not exists:
            like = "LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE"  # its checks too: ATTACH wants them
            conn.execute(sql.SQL("CREATE TABLE {} (" + like + ")").format(part, target))
        else:
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS NULL").format(part))  # no longer retention's to drop
        conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            target, part, sql.Literal(start), sql.Literal(end)))
    return True
