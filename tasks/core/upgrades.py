"""Data upgrades that follow a migration: work on rows too large for the migrations' one transaction
and its lock, done in batches that each commit by the first command after the upgrade, which says how
far it is. A kill loses at most the batch in flight; the next command goes on from there.

Migration 031 said an event not valued yet is ``pending`` (it was NULL) and made the status required.
On a database that holds such events, the statuses are set here, a range of event ids a transaction;
then the checks 031 added unvalidated are validated (a scan that lets writes go on) and the column is
made NOT NULL, which the validated check spares a second scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

GIVEN = "events_valuation_status_given"  # 031's CHECK (valuation_status IS NOT NULL), NOT VALID until every event has one
BATCH_IDS = 20_000
_LOCK = 0x4A535031
_SAY_EVERY_S = 10.0


def statuses_pending(conn: psycopg.Connection[Any]) -> bool:
    """Whether the events' statuses still wait for this upgrade (never on a database that ran 031 whole)."""
    row = conn.execute("SELECT NOT convalidated FROM pg_constraint WHERE conrelid = to_regclass('events') AND conname = %s",
                       (GIVEN,)).fetchone()
    return bool(row and row[0])


def mark_pending_events(conn: psycopg.Connection[Any], say: Callable[[str], None], *, batch_ids: int = BATCH_IDS) -> int:
    """Give the events without a status ``pending``, ``batch_ids`` event ids a transaction, then make
    the status required; returns the events marked. Does nothing inside a caller's transaction (a dry
    run) or once done; another process at it: wait for it (said once)."""
    idle = conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if not idle or not statuses_pending(conn):
        return 0
    if conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK,)).fetchone() != (True,):
        if conn.execute("SELECT EXISTS (SELECT 1 FROM events WHERE valuation_status IS NULL)").fetchone() == (True,):
            say("Waiting for another process that is marking events not valued yet as pending (upgrade 031)")
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))  # (on a new database: a moment, said by no one)
    try:
        return _mark(conn, say, batch_ids) if statuses_pending(conn) else 0
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))


def _mark(conn: psycopg.Connection[Any], say: Callable[[str], None], batch_ids: int) -> int:
    first, last, left = conn.execute("SELECT coalesce(min(event_id), 0), coalesce(max(event_id), -1), count(*) FROM events"
                                     " WHERE valuation_status IS NULL").fetchone() or (0, -1, 0)
    marked = 0
    if left:
        say(f"Marking {left:,} events not valued yet as pending (upgrade 031), {batch_ids:,} event ids a transaction")
        low, said_at = first, time.monotonic()
        while low <= last:
            with conn.transaction():
                marked += conn.execute("UPDATE events SET valuation_status = 'pending' WHERE event_id >= %s AND event_id < %s"
                                       " AND valuation_status IS NULL", (low, low + batch_ids)).rowcount
            low += batch_ids
            if time.monotonic() - said_at >= _SAY_EVERY_S and low <= last:
                say(f"  {marked:,} of {left:,} events marked ({marked / left:.0%})")
                said_at = time.monotonic()
    for check in (GIVEN, "events_valuation_status_check"):
        conn.execute(sql.SQL("ALTER TABLE events VALIDATE CONSTRAINT {}").format(sql.Identifier(check)))
    with conn.transaction():
        conn.execute("ALTER TABLE events ALTER COLUMN valuation_status SET NOT NULL")
        conn.execute(sql.SQL("ALTER TABLE events DROP CONSTRAINT {}").format(sql.Identifier(GIVEN)))
    if left:
        say(f"Marked {marked:,} events pending (upgrade 031)")
    return marked
