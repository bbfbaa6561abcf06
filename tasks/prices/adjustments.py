"""Keep stored ``adj_close`` history consistent when a new split or dividend appears.

Yahoo's ``adj_close`` restates every bar before an ex-date. A fetch of recent sessions that shows
a corporate action we have not recorded yet means the ticker's older stored ``adj_close`` values are
now on the old basis: adjusted returns would jump across the ex-date. One refetch from the first
stored bar restates them all; the upsert then rewrites only the rows whose values changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from tasks.core.db import database_errors
from tasks.core.types import FetchRequest, FetchResult
from tasks.prices.obtain import obtain_bars
from tasks.prices.store import BAR_TABLES
from tasks.sources.cache import DownloadCache
from tasks.sources.protocol import BarSource


def restatement_request(conn: psycopg.Connection[Any], table: str, result: FetchResult) -> FetchRequest | None:
    """The wider request that restates ``result``'s ticker, or None when no restatement is due:
    due when the result carries a split/dividend not yet in ``dividends_and_splits`` and the ticker
    has stored bars before the result's range.

    Raises:
        StoreError: the database could not be read.
    """
    if result.actions.empty or table not in BAR_TABLES:
        return None
    ticker = result.request.symbol
    with database_errors(f"reading {ticker}'s stored history failed"):
        known = {(d, k) for d, k in conn.execute("SELECT ex_date, kind FROM dividends_and_splits WHERE ticker = %s", (ticker,))}
        new = [(d, k) for d, k in zip(result.actions["ex_date"], result.actions["kind"], strict=True) if (d, k) not in known]
        if not new:
            return None
        row = conn.execute(sql.SQL("SELECT min(trade_date) FROM {} WHERE ticker = %s").format(sql.Identifier(table)), (ticker,)).fetchone()
    first: dt.date | None = row[0] if row else None
    if first is None or first >= result.request.start:
        return None
    return FetchRequest(ticker, first, result.request.end)


def with_restated_history(conn: psycopg.Connection[Any], table: str, result: FetchResult, *, cache: DownloadCache,
                          source: Callable[[], BarSource] | None) -> FetchResult:
    """``result``, or (when a new corporate action calls for it) the ticker's whole stored range,
    fetched once (cache first), so its stored ``adj_close`` history is restated with it.
    ``source`` builds the network source only when a refetch is due (None: cache only).

    Raises:
        RateLimited, SourceError: the restating fetch failed; store nothing of the ticker, so the
            next run sees the action as new again and retries.
        StoreError: the database could not be read.
    """
    wider = restatement_request(conn, table, result)
    if wider is None:
        return result
    return obtain_bars(wider, cache=cache, source=source() if source is not None else None)
