"""Read access to the JSONL market data tables, for notebooks and services.

Every function takes an open connection; times are aware datetimes; rows come back as dicts, keyed by
the source document's names (``symbol``, ``bar_time``, ``event_time``, ``gap_start_ts``), which the
tables call ``ticker``, ``polled_at`` / ``bar_start_at``, ``event_at``, ``gap_start_at`` since migration 036.
"Critical" gaps are those of at least ``min_seconds`` (default 60 s: a full 1-minute bar lost).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.rows import dict_row

_BAR_COLUMNS = ("ticker AS symbol, polled_at AS bar_time, open, high, low, close, volume, bid_price, ask_price, session_id, source_file,"
                " source_line")
_TICK_COLUMNS = ("ticker AS symbol, event_at AS event_time, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id, "
                 "mitigation_level, quality_flag, source_file, source_line")
_GAP_COLUMNS = "gap_start_at AS gap_start_ts, gap_end_at AS gap_end_ts, gap_seconds, scope, reason, session_id, source_file, source_line"
CRITICAL_GAP_SECONDS = 60.0


def _rows(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)  # module constants only
        return list(cur.fetchall())


def _day_range(start_date: dt.date, end_date: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(start_date, dt.time(), dt.UTC)
    return start, dt.datetime.combine(end_date + dt.timedelta(days=1), dt.time(), dt.UTC)


def get_latest_bars(conn: psycopg.Connection[Any], symbol: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` 10-minute swing bars of ``symbol``, newest first."""
    return _rows(conn, f"SELECT {_BAR_COLUMNS} FROM observer_bars_10m WHERE ticker = %s ORDER BY polled_at DESC LIMIT %s", (symbol, limit))  # noqa: S608


def get_bars_in_range(conn: psycopg.Connection[Any], symbol: str, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """Swing bars of ``symbol`` with start <= bar_time < end, oldest first."""
    return _rows(conn, f"SELECT {_BAR_COLUMNS} FROM observer_bars_10m WHERE ticker = %s AND polled_at >= %s AND polled_at < %s"  # noqa: S608
                 " ORDER BY polled_at", (symbol, start, end))


def get_latest_ticks(conn: psycopg.Connection[Any], symbol: str, limit: int = 100) -> list[dict[str, Any]]:
    """The newest ``limit`` scalp ticks of ``symbol``, newest first."""
    return _rows(conn, f"SELECT {_TICK_COLUMNS} FROM observer_ticks WHERE ticker = %s ORDER BY event_at DESC, id DESC LIMIT %s",  # noqa: S608
                 (symbol, limit))


def get_ticks_in_range(conn: psycopg.Connection[Any], symbol: str, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """Scalp ticks of ``symbol`` with start <= event_time < end, oldest first."""
    return _rows(conn, f"SELECT {_TICK_COLUMNS} FROM observer_ticks WHERE ticker = %s AND event_at >= %s AND event_at < %s"  # noqa: S608
                 " ORDER BY event_at, id", (symbol, start, end))


def get_1m_bars(conn: psycopg.Connection[Any], symbol: str, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """1-minute bars aggregated from the ticks, start <= bar_time < end, oldest first."""
    return _rows(conn, "SELECT ticker AS symbol, bar_start_at AS bar_time, open, high, low, close, volume, tick_count, coverage_ratio,"
                 " session_id, mitigation_level, quality_flag FROM observer_bars_1m WHERE ticker = %s AND bar_start_at >= %s"
                 " AND bar_start_at < %s ORDER BY bar_start_at", (symbol, start, end))


def count_gaps(conn: psycopg.Connection[Any], scope: str, start_date: dt.date, end_date: dt.date) -> int:
    """Gaps of ``scope`` that started on a UTC day from ``start_date`` to ``end_date`` inclusive."""
    start, end = _day_range(start_date, end_date)
    row = conn.execute("SELECT count(*) FROM observer_gaps WHERE scope = %s AND gap_start_at >= %s AND gap_start_at < %s",
                       (scope, start, end)).fetchone()
    return int(row[0]) if row else 0


def get_critical_gaps(conn: psycopg.Connection[Any], start_date: dt.date, end_date: dt.date,
                      min_seconds: float = CRITICAL_GAP_SECONDS) -> list[dict[str, Any]]:
    """Gaps of at least ``min_seconds`` that started within the days, longest first."""
    start, end = _day_range(start_date, end_date)
    return _rows(conn, f"SELECT {_GAP_COLUMNS} FROM observer_gaps WHERE gap_seconds >= %s AND gap_start_at >= %s AND gap_start_at < %s"  # noqa: S608
                 " ORDER BY gap_seconds DESC, gap_start_at", (min_seconds, start, end))
