"""Intraday bars in PostgreSQL: month partitions made before a batch needs them, one transaction per
request (its bars and the sessions it fetched whole), and what is stored already, for the plan."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import pandas as pd
import psycopg

from tasks.core.binary_copy import copy_frame
from tasks.core.db import database_errors
from tasks.core.partitions import make_partitions
from tasks.core.sql_files import statement
from tasks.core.types import StoreCounts

TABLE = "intraday_bars"
STAGE_TYPES = {"ticker": "text", "bar_epoch": "int8", "session": "date", "regular": "int8", "open": "float8", "high": "float8",
               "low": "float8", "close": "float8", "volume": "int8"}
REPAIRED = {"repaired": "int8"}  # with --repair: 1 where yfinance's repair changed the bar


def month_partition(month: dt.date) -> tuple[str, tuple[str, dt.datetime, dt.datetime]]:
    """The partition of the month starting ``month`` (UTC): its name and (parent, start, end)."""
    start = dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)
    end = dt.datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=dt.UTC)
    return f"{TABLE}_p{month:%Y%m}", (TABLE, start, end)


def ensure_months(conn: psycopg.Connection[Any], moments: Iterable[dt.datetime]) -> list[str]:
    """Make the month partitions the bars starting at ``moments`` fall in (``conn`` in autocommit)."""
    months = {dt.date(m.astimezone(dt.UTC).year, m.astimezone(dt.UTC).month, 1) for m in moments}
    with database_errors("making the intraday bars' month partitions failed"):
        return make_partitions(conn, dict(month_partition(m) for m in months))


def fetched_sessions(conn: psycopg.Connection[Any], tickers: list[str], interval: str, first: dt.date, last: dt.date, *,
                     prepost: bool, settled: dict[dt.date, dt.datetime]) -> dict[str, set[dt.date]]:
    """Per ticker, the sessions already fetched whole at ``interval`` (with pre/post bars too when
    ``prepost``), fetched at or after the time ``settled`` gives for the session."""
    out: dict[str, set[dt.date]] = {t: set() for t in tickers}
    with database_errors("reading the fetched intraday sessions failed"):
        rows = conn.execute(
            "SELECT ticker, session, fetched_at FROM intraday_sessions_fetched WHERE ticker = ANY(%s) AND interval = %s"
            " AND session BETWEEN %s AND %s AND (prepost OR NOT %s)", (tickers, interval, first, last, prepost)).fetchall()
    for ticker, session, fetched_at in rows:
        if session in settled and fetched_at >= settled[session]:
            out[ticker].add(session)
    return out


def store_intraday(conn: psycopg.Connection[Any], ticker: str, interval: str, bars: pd.DataFrame, sessions: dict[dt.date, int], *,
                   prepost: bool) -> StoreCounts:
    """Upsert one request's bars (``bar_epoch, session, regular, open, high, low, close, volume``) and
    record ``sessions`` (session → its bar count) as fetched whole, in one transaction.

    Raises:
        StoreError: PostgreSQL refused it (nothing of the request is written).
    """
    new = changed = 0
    with database_errors(f"writing {len(bars)} {interval} bars of {ticker} failed"):
        with conn.transaction(), conn.cursor() as cur:
            if not bars.empty:
                cur.execute(statement("stage_intraday"))
                columns = {**STAGE_TYPES, **(REPAIRED if "repaired" in bars.columns else {})}
                copy_frame(cur, "stage_intraday", columns, bars.assign(ticker=ticker)[list(columns)])
                cur.execute(statement("upsert_intraday"), {"interval": interval, "source": "yahoo"})
                row = cur.fetchone()
                existed, changed = (int(row[0]), int(row[1])) if row else (0, 0)
                new = len(bars) - existed
                cur.execute("DROP TABLE stage_intraday")
            cur.executemany(
                "INSERT INTO intraday_sessions_fetched (ticker, interval, session, prepost, bars) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (ticker, interval, session, prepost) DO UPDATE SET bars = EXCLUDED.bars, fetched_at = now()",
                [(ticker, interval, day, prepost, count) for day, count in sessions.items()])
    return StoreCounts(new=new, updated=changed - new, unchanged=len(bars) - changed)


def restate_for_splits(conn: psycopg.Connection[Any], ticker: str) -> int:
    """Restate the ticker's stored intraday bars for each split known (``dividends_and_splits``) and not
    yet applied (migration 021): bars of sessions before the ex-date that were fetched before it
    (Yahoo had not adjusted them) get prices divided and volume multiplied by the ratio. One
    transaction; returns the bars restated.

    Raises:
        StoreError: PostgreSQL refused it (nothing restated).
    """
    total = 0
    with database_errors(f"restating the intraday bars of {ticker} for splits failed"):
        with conn.transaction():
            pending = conn.execute(
                "SELECT a.ex_date, a.split_ratio FROM dividends_and_splits a WHERE a.ticker = %s AND a.split_ratio > 0"
                " AND NOT EXISTS (SELECT 1 FROM intraday_split_restatements r WHERE r.ticker = a.ticker AND r.ex_date = a.ex_date)"
                " ORDER BY a.ex_date FOR UPDATE OF a", (ticker,)).fetchall()
            for ex_date, ratio in pending:
                done = conn.execute(
                    "UPDATE intraday_bars SET open = open / %(r)s, high = high / %(r)s, low = low / %(r)s, close = close / %(r)s,"
                    " volume = round(volume * %(r)s) WHERE ticker = %(t)s AND session_date < %(d)s"
                    " AND fetched_at < (%(d)s::timestamp AT TIME ZONE 'America/New_York')", {"r": ratio, "t": ticker, "d": ex_date})
                conn.execute("INSERT INTO intraday_split_restatements (ticker, ex_date, ratio, bars) VALUES (%s, %s, %s, %s)",
                             (ticker, ex_date, ratio, done.rowcount))
                total += done.rowcount
    return total
