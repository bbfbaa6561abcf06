"""Retention: delete rows older than their table's window, in small batches, never a row inside it.

Windows (the source document's, configurable), counted in whole UTC days (a window of N days
keeps everything from midnight UTC N days before today's; ticks and their bars share that
boundary): real-time data — ticks and the copies of ticks other files carry, 1-minute bars,
10-minute bars and every file's version of them, gaps — 30 days; daily history 2 years; run logs,
JSONL rejects and price-change logs 7 days. Analysis results (rankings, portfolios), fund holdings
snapshots and shares-outstanding history are kept: they are small, and a past as-of date is
recomputed from them.

Retention is consistent with what reads what it deletes: a price change stays while it still
makes some valued event pending (its ticker's change, or SPY's for every event, within the event's
45-day window; ``imports.change_reaches``); the fetched-range records (``price_fetch_coverage``)
lose the dates whose bars went, so a valuation that needs them again fetches them instead of
finding "no bar"; swing versions and tick copies go with their bars and ticks, so no later
rewrite of a file brings back a row retention removed.

Daily bars that a pending event valuation still needs are kept whatever their age: the bars of
each ticker with an event not yet valued from 60 days (the 30 sessions the metrics look back,
with room) before its earliest such event, and SPY's from before the earliest of them all.

Ticks and 1-minute bars are kept in one partition per UTC day (``tasks/jsonl/partitions.py``): their
old days are dropped whole (``DETACH PARTITION ... CONCURRENTLY``, then ``DROP TABLE``: no row is
deleted one by one, nothing is left to vacuum, and loaders writing today's partition never wait).
Every other table loses its old rows in batches, each its own short transaction
(``DELETE ... WHERE ctid = ANY(ARRAY(SELECT ... LIMIT n))``), so no lock is held for long and a run
stopped half-way leaves a consistent, smaller table. A move into partitions left by an upgrade
(migration 017) is finished first.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tasks.core.db import database_errors
from tasks.core.sql_files import statement
from tasks.jsonl.partitions import DAY_TABLES, RETENTION_MARK, day_partitions, is_partitioned
from tasks.jsonl.upgrade import finish_moves, pending_moves
from tasks.prices.changes import change_reaches

BATCH_ROWS = 5_000
PENDING_EVENT_MARGIN_DAYS = 60


@dataclass(frozen=True)
class RetentionWindows:
    """Days to keep per kind of data (the source document's defaults)."""

    realtime_days: int = 30
    daily_days: int = 730
    log_days: int = 7


@dataclass(frozen=True)
class Rule:
    table: str
    column: str
    kind: str  # realtime | daily | logs
    extra: str = ""  # one more SQL condition (constant text) that a deleted row must meet
    protects_pending: bool = False  # daily bars: keep what pending event valuations need
    key_time: bool = False  # ``column`` is a tick key, whose leading 48 bits are the tick's time in ms


RULES: tuple[Rule, ...] = (
    Rule("observer_ticks", "event_at", "realtime"),
    Rule("observer_bars_1m", "bar_start_at", "realtime"),
    Rule("observer_bars_10m", "polled_at", "realtime"),
    Rule("swing_bar_versions", "bar_time", "realtime"),
    Rule("scalp_tick_copies", "tick_key", "realtime", key_time=True),
    Rule("observer_gaps", "gap_start_at", "realtime"),
    Rule("etf_daily_bars", "trade_date", "daily", protects_pending=True),
    Rule("benchmark_daily_bars", "trade_date", "daily", protects_pending=True),
    Rule("stock_daily_bars", "trade_date", "daily", protects_pending=True),
    Rule("backfill_runs", "started_at", "logs", extra="status <> 'running'"),
    Rule("jsonl_rejects", "rejected_at", "logs"),
    # a change the event valuation has not yet acted on (an event it makes pending again) stays
    Rule("price_changes", "changed_at", "logs", extra="NOT EXISTS (SELECT 1 FROM events e WHERE " + change_reaches("t", "e") + ")"),  # noqa: S608 (constant text)
)
DAILY_TABLES = ("etf_daily_bars", "benchmark_daily_bars", "stock_daily_bars")


def cutoffs(windows: RetentionWindows, now: dt.datetime) -> dict[str, dt.datetime]:
    """The oldest moment each kind keeps (rows strictly older go): midnight UTC, N days before today's."""
    days = {"realtime": windows.realtime_days, "daily": windows.daily_days, "logs": windows.log_days}
    today = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {kind: today - dt.timedelta(days=n) for kind, n in days.items()}


def key_at(moment: dt.datetime) -> str:
    """The smallest tick key of a tick at ``moment`` (``tasks/jsonl/ticks.py``: milliseconds first)."""
    millis = (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(milliseconds=1)
    return f"{millis % (1 << 48):012x}" + "0" * 20


def _condition(rule: Rule) -> sql.Composable:
    bound = sql.SQL("%(cutoff)s::uuid" if rule.key_time else "%(cutoff)s")
    parts: list[sql.Composable] = [sql.SQL("t.{} < {}").format(sql.Identifier(rule.column), bound)]
    if rule.extra:
        parts.append(sql.SQL(rule.extra))  # constant text from RULES, never user input
    if rule.protects_pending:
        parts.append(sql.SQL("NOT EXISTS (SELECT 1 FROM retention_pending p WHERE p.ticker = t.ticker AND t.trade_date >= p.keep_from)"))
    return sql.SQL(" AND ").join(parts)


def _prepare_pending(conn: psycopg.Connection[Any]) -> None:
    """``retention_pending``: per ticker (and SPY for all) the first bar date pending valuations need."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS retention_pending (ticker text PRIMARY KEY, keep_from date NOT NULL)")
    conn.execute("TRUNCATE retention_pending")
    conn.execute(
        "INSERT INTO retention_pending (ticker, keep_from)"
        " SELECT ticker, min(event_at)::date - %(margin)s FROM events WHERE valued_at IS NULL GROUP BY ticker"
        " UNION ALL SELECT 'SPY', min(event_at)::date - %(margin)s FROM events WHERE valued_at IS NULL HAVING count(*) > 0"
        " ON CONFLICT (ticker) DO UPDATE SET keep_from = least(retention_pending.keep_from, excluded.keep_from)",
        {"margin": PENDING_EVENT_MARGIN_DAYS},
    )


def _existing(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute("SELECT c.relname FROM pg_class c WHERE pg_table_is_visible(c.oid) AND c.relname = ANY(%s)",
                        ([r.table for r in RULES],))
    return {r[0] for r in rows}


def apply_retention(conn: psycopg.Connection[Any], windows: RetentionWindows, *, dry_run: bool, now: dt.datetime | None = None,
                    batch_rows: int = BATCH_ROWS, progress: Callable[[str, int], None] | None = None,
                    say: Callable[[str], None] = print) -> dict[str, int]:
    """Rows deleted per table (in a dry run: rows that would be), each table in batches of ``batch_rows``
    or, for ticks and 1-minute bars, by whole days.

    ``conn`` must be in autocommit mode: each batch commits on its own.

    Raises:
        StoreError: the database failed (batches already committed stay deleted).
    """
    limits = cutoffs(windows, now or dt.datetime.now(dt.UTC))
    counts: dict[str, int] = {}
    with database_errors("retention failed (batches already deleted stay deleted)"):
        if not dry_run:
            finish_moves(conn, say)
        _prepare_pending(conn)
        present = _existing(conn)
        for rule in RULES:
            if rule.table not in present:
                continue
            if rule.table in DAY_TABLES and is_partitioned(conn, rule.table):
                counts[rule.table] = _drop_old_days(conn, rule.table, limits[rule.kind], dry_run=dry_run, progress=progress,
                                                    say=say)
                continue
            cutoff: Any = limits[rule.kind]
            if rule.column == "trade_date":  # a date column: compare with the cutoff's date
                cutoff = cutoff.date()
            elif rule.key_time:
                cutoff = key_at(cutoff)
            params = {"cutoff": cutoff, "batch": batch_rows}
            table = sql.Identifier(rule.table)
            if dry_run:
                row = conn.execute(sql.SQL("SELECT count(*) FROM {} t WHERE {}").format(table, _condition(rule)), params).fetchone()
                counts[rule.table] = int(row[0]) if row else 0
                continue
            delete = sql.SQL("DELETE FROM {} WHERE ctid = ANY(ARRAY(SELECT t.ctid FROM {} t WHERE {} LIMIT %(batch)s))").format(
                table, table, _condition(rule))
            total = 0
            while True:
                deleted = conn.execute(delete, params).rowcount
                total += max(deleted, 0)
                if progress is not None and deleted:
                    progress(rule.table, total)
                if deleted < batch_rows:
                    break
            counts[rule.table] = total
            if rule.table in DAILY_TABLES:
                _forget_fetched_ranges(conn, rule.table, cutoff)
    return counts


def _forget_fetched_ranges(conn: psycopg.Connection[Any], table: str, cutoff: dt.date) -> None:
    """Trim ``table``'s fetched-range records to the dates whose bars retention keeps (from the
    cutoff, or from where a pending valuation's protection starts): a later run that needs older
    bars fetches them, as on a database that never held them. Also mends records left by
    retention before it did this."""
    conn.execute(statement("trim_fetched_ranges"), {"cutoff": cutoff, "table": table})


def _drop_old_days(conn: psycopg.Connection[Any], table: str, cutoff: dt.datetime, *, dry_run: bool,
                   progress: Callable[[str, int], None] | None, say: Callable[[str], None] = print) -> int:
    """Drop ``table``'s day partitions before ``cutoff`` (midnight UTC); their rows (a dry run counts
    them, and the rows of a move into partitions not yet finished). Each is marked as retention's
    before it is detached, and its day taken out of the files' records (so the loader does not
    take it for a day dropped by hand and load it again); a partition a run killed half-way left
    detached is finished and dropped too. A table of a partition's name that someone else
    detached is left alone, said."""
    column = sql.Identifier(DAY_TABLES[table])
    total = 0
    if dry_run:
        for move in pending_moves(conn):
            if move.table == table:
                query = sql.SQL("SELECT count(*) FROM {} WHERE {} < %s").format(sql.Identifier(move.source), column)
                total += _count(conn, query, (cutoff,))
    for day, part in sorted(day_partitions(conn, table).items()):
        if day >= cutoff.date():
            continue
        name = sql.Identifier(part.name)
        if not part.attached and not part.retired:
            say(f"Retention leaves {part.name} alone: it was detached from {table}, not by retention (drop it yourself if it"
                " is not wanted)")
            continue
        total += _count(conn, sql.SQL("SELECT count(*) FROM {}").format(name), ())
        if not dry_run:
            if table == "observer_ticks":
                conn.execute("UPDATE jsonl_file_checkpoints SET tick_days = NULLIF(array_remove(tick_days, %s), '{}')"
                             " WHERE tick_days @> ARRAY[%s::date]", (day, day))
            conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(name, sql.Literal(RETENTION_MARK)))
            if part.attached:  # FINALIZE: a detach a killed run began
                how = sql.SQL("FINALIZE" if part.detach_pending else "CONCURRENTLY")
                conn.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {} {}").format(sql.Identifier(table), name, how))
            conn.execute(sql.SQL("DROP TABLE {}").format(name))
        if progress is not None:
            progress(table, total)
    return total


def _count(conn: psycopg.Connection[Any], query: sql.Composed, params: tuple[Any, ...]) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0
