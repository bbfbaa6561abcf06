"""Retention: delete rows older than their table's window, in small batches, never a row inside it.

Windows (the source document's, configurable): real-time data — ticks, 1-minute and 10-minute
bars, gaps — 30 days; daily history 2 years; run logs, JSONL rejects and price-change logs 7
days (a price change the event valuation has not yet acted on stays). Analysis results
(rankings, portfolios), fund holdings snapshots and shares-outstanding history are kept: they are
small, and a past as-of date is recomputed from them.

Daily bars that a pending event valuation still needs are kept whatever their age: the bars of
each ticker with an event not yet valued from 60 days (the 30 sessions the metrics look back,
with room) before its earliest such event, and SPY's from before the earliest of them all.

Each batch is its own short transaction (``DELETE ... WHERE ctid = ANY(ARRAY(SELECT ... LIMIT n))``),
so no lock is held for long and a run stopped half-way leaves a consistent, smaller table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tasks.core.db import database_errors

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


RULES: tuple[Rule, ...] = (
    Rule("scalp_ticks", "event_time", "realtime"),
    Rule("scalp_1m_bars", "bar_time", "realtime"),
    Rule("swing_bars_10m", "bar_time", "realtime"),
    Rule("scalp_gaps", "gap_start_ts", "realtime"),
    Rule("collected_daily_etf_ohlc", "trade_date", "daily", protects_pending=True),
    Rule("collected_daily_benchmark_ohlc", "trade_date", "daily", protects_pending=True),
    Rule("collected_daily_stock_history", "trade_date", "daily", protects_pending=True),
    Rule("backfill_runs", "started_at", "logs", extra="status <> 'running'"),
    Rule("jsonl_rejects", "rejected_at", "logs"),
    # a change the event valuation has not yet acted on (an event of the ticker valued before it) stays
    Rule("price_changes", "changed_at", "logs",
         extra="NOT EXISTS (SELECT 1 FROM txn_events e WHERE e.ticker = t.ticker AND e.valued_at < t.changed_at)"),
)


def cutoffs(windows: RetentionWindows, now: dt.datetime) -> dict[str, dt.datetime]:
    """The oldest moment each kind keeps (rows strictly older go)."""
    days = {"realtime": windows.realtime_days, "daily": windows.daily_days, "logs": windows.log_days}
    return {kind: now - dt.timedelta(days=n) for kind, n in days.items()}


def _condition(rule: Rule) -> sql.Composable:
    parts: list[sql.Composable] = [sql.SQL("t.{} < %(cutoff)s").format(sql.Identifier(rule.column))]
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
        " SELECT ticker, min(event_time)::date - %(margin)s FROM txn_events WHERE valued_at IS NULL GROUP BY ticker"
        " UNION ALL SELECT 'SPY', min(event_time)::date - %(margin)s FROM txn_events WHERE valued_at IS NULL HAVING count(*) > 0"
        " ON CONFLICT (ticker) DO UPDATE SET keep_from = least(retention_pending.keep_from, excluded.keep_from)",
        {"margin": PENDING_EVENT_MARGIN_DAYS},
    )


def _existing(conn: psycopg.Connection[Any]) -> set[str]:
    rows = conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname = current_schema() AND c.relname = ANY(%s)", ([r.table for r in RULES],))
    return {r[0] for r in rows}


def apply_retention(conn: psycopg.Connection[Any], windows: RetentionWindows, *, dry_run: bool, now: dt.datetime | None = None,
                    batch_rows: int = BATCH_ROWS, progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Rows deleted per table (in a dry run: rows that would be), each table in batches of ``batch_rows``.

    ``conn`` must be in autocommit mode: each batch commits on its own.

    Raises:
        StoreError: the database failed (batches already committed stay deleted).
    """
    limits = cutoffs(windows, now or dt.datetime.now(dt.UTC))
    counts: dict[str, int] = {}
    with database_errors("retention failed (batches already deleted stay deleted)"):
        _prepare_pending(conn)
        present = _existing(conn)
        for rule in RULES:
            if rule.table not in present:
                continue
            cutoff: Any = limits[rule.kind]
            if rule.column == "trade_date":  # a date column: compare with the cutoff's date
                cutoff = cutoff.date()
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
    return counts
