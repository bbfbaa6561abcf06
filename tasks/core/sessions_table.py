"""The ``nyse_sessions`` table: the exchange's sessions in the database, for the coverage view and
for users' own gap queries, kept up to date by the commands (the calendar covers about a year ahead,
so the table is extended when fewer than ``AHEAD_DAYS`` of future sessions are left)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any

import psycopg

from tasks.core.time_bounds import CALENDAR_START

AHEAD_DAYS = 60


def sessions_due(conn: psycopg.Connection[Any], today: dt.date | None = None) -> bool:
    """Whether the table needs (more) sessions: one indexed lookup, no calendar loaded."""
    row = conn.execute("SELECT max(session_date) FROM nyse_sessions").fetchone()
    last = row[0] if row else None
    return last is None or last < (today or dt.date.today()) + dt.timedelta(days=AHEAD_DAYS)


@lru_cache(maxsize=1)
def sessions_copy_text() -> bytes:
    """Every NYSE session the calendar knows, as COPY text rows (session, open, close, early close):
    built once per process (the suite and a long-lived worker migrate many databases)."""
    from tasks.core.calendar import nyse

    cal = nyse()
    sessions = cal.sessions[cal.sessions >= str(CALENDAR_START)]
    opens, closes = cal.opens[sessions], cal.closes[sessions]
    early = set(cal.early_closes)
    lines = (f"{s.date()}\t{o.isoformat()}\t{c.isoformat()}\t{'t' if s in early else 'f'}\n"
             for s, o, c in zip(sessions, opens, closes, strict=True))
    return "".join(lines).encode()


def ensure_sessions(conn: psycopg.Connection[Any]) -> int:
    """Add the sessions the table lacks (in the caller's transaction); how many were added."""
    if not sessions_due(conn):
        return 0
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE new_sessions (LIKE nyse_sessions) ON COMMIT DROP")
        with cur.copy("COPY new_sessions (session_date, open_at, close_at, early_close) FROM STDIN") as copy:
            copy.write(sessions_copy_text())
        cur.execute("INSERT INTO nyse_sessions SELECT * FROM new_sessions ON CONFLICT (session_date) DO NOTHING")
        added = cur.rowcount
        cur.execute("DROP TABLE new_sessions")
    return added
