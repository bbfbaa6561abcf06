"""Writes bars and corporate actions: COPY into a temp table, then one upsert, in one transaction.

Callers may already be in a transaction (to commit a progress record with the rows); ours
then nests as a savepoint, so either everything of the call is written or nothing is.
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from tasks.core.binary_copy import copy_frame
from tasks.core.db import database_errors
from tasks.core.sql_files import statement
from tasks.core.types import StoreCounts

ETF_TABLE = "etf_daily_bars"
STOCK_TABLE = "stock_daily_bars"
BENCHMARK_TABLE = "benchmark_daily_bars"
BAR_TABLES = (ETF_TABLE, STOCK_TABLE, BENCHMARK_TABLE)


@cache
def _table(table: str) -> sql.Identifier:
    if table not in BAR_TABLES:
        raise ValueError(f"not a bar table: {table}")
    return sql.Identifier(table)


def stored_dates(conn: psycopg.Connection[Any], table: str, tickers: list[str], first: dt.date, last: dt.date) -> dict[str, set[dt.date]]:
    """Sessions already stored (with a close) per ticker between ``first`` and ``last``.

    Raises:
        StoreError: the query failed.
    """
    return _dates(conn, table, tickers, "trade_date BETWEEN %s AND %s AND close IS NOT NULL", (first, last))


def stale_dates(conn: psycopg.Connection[Any], table: str, tickers: list[str], days: list[dt.date], older_than_s: float) -> dict[str,
                                                                                                                                 set[dt.date]]:
    """Of ``days``, those stored per ticker whose values were last written more than ``older_than_s`` ago.

    Raises:
        StoreError: the query failed.
    """
    if not days:
        return {t: set() for t in tickers}
    return _dates(conn, table, tickers, "trade_date = ANY(%s) AND fetched_at < now() - make_interval(secs => %s)", (days, older_than_s))


def _dates(conn: psycopg.Connection[Any], table: str, tickers: list[str], condition: str, params: tuple[Any, ...]) -> dict[str,
                                                                                                                           set[dt.date]]:
    """Stored trade dates per ticker of ``tickers`` meeting ``condition`` (our own SQL text, values as parameters)."""
    query = sql.SQL("SELECT ticker, trade_date FROM {} WHERE ticker = ANY(%s) AND " + condition).format(_table(table))  # noqa: S608
    out: dict[str, set[dt.date]] = {t: set() for t in tickers}
    with database_errors(f"reading {table} failed"):
        for ticker, day in conn.execute(query, (tickers, *params)):
            out[ticker].add(day)
    return out


BAR_TYPES = {"ticker": "text", "trade_date": "date", "open": "float8", "high": "float8", "low": "float8", "close": "float8",
             "adj_close": "float8", "volume": "int8"}


def store_bars(conn: psycopg.Connection[Any], table: str, bars: pd.DataFrame, *, source: str = "yahoo") -> StoreCounts:
    """Upsert ``bars`` (``BAR_COLUMNS``) into ``table``; identical rows are left alone.

    Raises:
        StoreError: PostgreSQL refused the batch (nothing of it is written).
    """
    if bars.empty:
        return StoreCounts()
    columns = {**BAR_TYPES, **({"repaired": "int8"} if "repaired" in bars.columns else {})}  # fetched with --repair: marked
    frame = bars[list(columns)]
    upsert = sql.SQL(statement("upsert_bars")).format(table=_table(table))
    with database_errors(f"writing {len(frame)} rows to {table} failed"):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(statement("stage_bars"))
            copy_frame(cur, "stage_bars", columns, frame)
            cur.execute(upsert, {"source": source, "table_name": table})
            row = cur.fetchone()
            cur.execute("DROP TABLE stage_bars")
    new, changed = (int(row[0]), int(row[1])) if row else (0, 0)
    return StoreCounts(new=new, updated=changed - new, unchanged=len(frame) - changed)


def store_actions(conn: psycopg.Connection[Any], actions: pd.DataFrame) -> int:
    """Record splits and dividends; return how many are new to the table.

    Raises:
        StoreError: PostgreSQL refused the rows.
    """
    if actions.empty:
        return 0
    new = 0
    with database_errors("writing corporate actions failed"):
        with conn.transaction():
            for ticker, group in actions.groupby("ticker"):
                rows = conn.execute(
                    statement("upsert_actions"),
                    {"ticker": ticker, "ex_dates": list(group["ex_date"]), "kinds": list(group["kind"]),
                     "values": [float(v) for v in group["value"]]},
                ).fetchall()
                new += sum(1 for r in rows if r[0])
    return new

