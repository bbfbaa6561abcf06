"""Ticks and their 1-minute bars live in one partition per UTC day (``observer_ticks_p20260122``).

Retention drops a whole day (``DROP TABLE``, no row-by-row delete, no vacuum), and a range query
scans only the days it names. A day's partition is made before the first row of that day is
written (and the next day's with it): a table made with the parent's columns, then attached,
which takes only a SHARE UPDATE EXCLUSIVE lock on the parent, so loaders writing other days go on.

The unique keys of a partitioned table must hold its partition column: the tick key is unique
with its event time (the key's leading 48 bits are that time, so this is the same rule), and a
file's line with its event time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from tasks.core.partitions import RETENTION_MARK, attach_partition, make_partitions

# The day-partitioned tables and their partition column.
DAY_TABLES: dict[str, str] = {"observer_ticks": "event_at", "observer_bars_1m": "bar_start_at"}
# What PostgreSQL names a partition's part of the unique tick key (``observer_ticks_p20260122_tick_key_event_time_key``:
# an index's columns keep the names they were made with, and migration 036 renamed event_time after).
TICK_KEY_INDEX_SUFFIX = "_tick_key_event_time_key"
_MS_PER_DAY = 86_400_000


def partition_name(table: str, day: dt.date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def day_of_key(key: str) -> dt.date:
    """The UTC day of a tick from its key's leading 48 bits (milliseconds since 1970, modulo 2**48:
    a time before 1970 wrapped round; ticks are 1900 to 2200, far from either end)."""
    millis = int(key[:12], 16)
    if millis >= 1 << 47:
        millis -= 1 << 48
    return dt.date(1970, 1, 1) + dt.timedelta(days=millis // _MS_PER_DAY)


def days_of_keys(keys: Iterable[str]) -> set[dt.date]:
    return {day_of_key(key) for key in {key[:12] for key in keys}}


def is_tick_key_violation(exc: psycopg.errors.UniqueViolation) -> bool:
    """A tick already stored (in any day's partition, or the table before partitions)."""
    name = exc.diag.constraint_name or ""
    return name == "observer_ticks_tick_key" or (name.startswith("observer_ticks_p") and name.endswith(TICK_KEY_INDEX_SUFFIX))


def ensure_days(conn: psycopg.Connection[Any], days: Iterable[dt.date], tables: Iterable[str] = tuple(DAY_TABLES)) -> list[str]:
    """Make the partitions of ``days`` and of the day after the last, of ``tables`` (ticks and
    their bars), where missing; returns the names made. ``conn`` must be in autocommit mode (each
    is made and attached in its own short transaction, never inside a caller's batch)."""
    wanted = set(days)
    if not wanted:
        return []
    wanted.add(max(wanted) + dt.timedelta(days=1))  # ahead of the data: tomorrow is ready today
    return make_partitions(conn, {partition_name(table, day): (table, *_bounds(day)) for table in tables for day in wanted})


def attach_day(conn: psycopg.Connection[Any], table: str, day: dt.date) -> bool:
    """Make ``table``'s partition of ``day`` where missing, or attach again a detached one
    (``tasks/core/partitions.attach_partition``); False when another process did it a moment ago."""
    return attach_partition(conn, partition_name(table, day), table, *_bounds(day))


def _bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), dt.UTC)
    return start, start + dt.timedelta(days=1)


@dataclass(frozen=True)
class DayPartition:
    name: str
    attached: bool  # False: detached (by a retention run killed between detach and drop, or by hand)
    detach_pending: bool  # a DETACH ... CONCURRENTLY that a killed run began (FINALIZE ends it)
    retired: bool = False  # retention marked it to be dropped: a detached one that is not, it leaves alone


def day_partitions(conn: psycopg.Connection[Any], table: str) -> dict[dt.date, DayPartition]:
    """The tables named as ``table``'s day partitions on the search path (the machinery's schema), by day: those attached to it,
    and any that a killed retention run left detached."""
    rows = conn.execute(
        "SELECT c.relname, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false),"
        " coalesce(obj_description(c.oid, 'pg_class') = %s, false)"
        " FROM pg_class c"
        " LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = to_regclass(%s)"
        " WHERE pg_table_is_visible(c.oid) AND c.relkind = 'r' AND c.relname ~ %s"
        " AND (i.inhrelid IS NOT NULL OR NOT c.relispartition)",  # never another table's partition
        (RETENTION_MARK, table, f"^{table}_p[0-9]{{8}}$")).fetchall()
    return {dt.datetime.strptime(name[-8:], "%Y%m%d").date(): DayPartition(name, attached, pending, retired)  # noqa: DTZ007
            for name, attached, pending, retired in rows}


def is_partitioned(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", (table,)).fetchone()
    return bool(row and row[0])
