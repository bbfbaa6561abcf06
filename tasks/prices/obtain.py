"""Daily bars for valuation: from the database first, then the 24 h cache, then one network
fetch per ticker, stored back (with the fetched range) so reruns never refetch it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from tasks.core.calendar import NY_TZ, nyse, session_count
from tasks.core.db import database_errors
from tasks.core.errors import SourceError
from tasks.core.types import FetchRequest, FetchResult
from tasks.prices.store import BAR_TABLES, store_actions, store_bars
from tasks.sources.cache import DownloadCache
from tasks.sources.protocol import BarSource

SESSIONS_BEFORE = 30  # momentum and volatility look back 20 bars; a margin for gaps
SESSIONS_AFTER = 25  # ret_20d looks 20 bars ahead; a margin for gaps


def price_request(ticker: str, first_event: dt.datetime, last_event: dt.datetime, last_closed: dt.date) -> FetchRequest | None:
    """The one range of bars that values every event of ``ticker``: 30 sessions before the
    earliest event to 25 after the latest, clipped to the last closed session.

    None when the earliest event's range starts after the last closed session (nothing to fetch yet).
    """
    sessions = nyse().sessions
    first_day = pd.Timestamp(pd.Timestamp(first_event).tz_convert(NY_TZ).date())
    last_day = pd.Timestamp(pd.Timestamp(last_event).tz_convert(NY_TZ).date())
    lo = max(0, int(sessions.searchsorted(first_day, side="right")) - 1 - SESSIONS_BEFORE)
    hi = min(len(sessions) - 1, int(sessions.searchsorted(last_day, side="right")) - 1 + SESSIONS_AFTER)
    start, end = sessions[lo].date(), min(sessions[hi].date(), last_closed)
    if end < start:
        return None
    return FetchRequest(ticker, start, end)


def load_bars(conn: psycopg.Connection[Any], table: str, tickers: list[str], start: dt.date, end: dt.date) -> dict[str, pd.DataFrame]:
    """Stored bars (trade_date, close, adj_close, volume) per ticker between two dates, date-ordered."""
    if table not in BAR_TABLES:
        raise ValueError(table)
    query = sql.SQL(
        "SELECT ticker, trade_date, close, adj_close, volume FROM {} WHERE ticker = ANY(%s) AND trade_date BETWEEN %s AND %s"
        " ORDER BY ticker, trade_date"
    ).format(sql.Identifier(table))
    with conn.cursor() as cur:
        cur.execute(query, (tickers, start, end))
        frame = pd.DataFrame(cur.fetchall(), columns=["ticker", "trade_date", "close", "adj_close", "volume"])
    return {str(t): g.drop(columns="ticker").reset_index(drop=True) for t, g in frame.groupby("ticker", sort=False)}


_BAR_ROW = np.dtype([("idx", ">i4"), ("day", ">i4"), ("close", ">f8"), ("adj_close", ">f8"), ("volume", ">f8")])
_PG_EPOCH = np.datetime64("2000-01-01", "D")


def load_group_bars(conn: psycopg.Connection[Any], table: str, requests: list[FetchRequest]) -> pd.DataFrame:
    """Stored bars of several tickers, each within its own request range.

    The server packs the rows into one binary value of fixed-width records (the request's number
    for the ticker, the date as days since 2000, floats big-endian with NaN for NULL), read straight
    into numpy: one round trip, no text formatting on the server and no parsing here.
    Returns ``ticker, trade_date, close, adj_close, volume``, sorted by ticker and date, trade_date as
    datetime64.
    """
    columns = ["ticker", "trade_date", "close", "adj_close", "volume"]
    if table not in BAR_TABLES:
        raise ValueError(table)
    if not requests:
        return pd.DataFrame(columns=columns)
    ordered = sorted(requests, key=lambda r: r.symbol)
    query = sql.SQL(
        "SELECT string_agg(int4send(r.i::int4) || date_send(b.trade_date) || float8send(b.close)"
        " || float8send(coalesce(b.adj_close, 'NaN')) || float8send(coalesce(b.volume::float8, 'NaN')), ''::bytea"
        " ORDER BY r.i, b.trade_date) FROM {} b"
        " JOIN unnest(%s::text[], %s::date[], %s::date[]) WITH ORDINALITY AS r(ticker, s, e, i)"
        " ON b.ticker = r.ticker AND b.trade_date BETWEEN r.s AND r.e"
    ).format(sql.Identifier(table))
    row = conn.execute(query, ([r.symbol for r in ordered], [r.start for r in ordered], [r.end for r in ordered]), binary=True).fetchone()
    if row is None or not row[0]:
        return pd.DataFrame(columns=columns)
    rows = np.frombuffer(row[0], dtype=_BAR_ROW)
    names = np.array([r.symbol for r in ordered], dtype=object)
    return pd.DataFrame({
        "ticker": names[rows["idx"] - 1],
        "trade_date": (_PG_EPOCH + rows["day"].astype("timedelta64[D]")).astype("datetime64[ns]"),
        "close": rows["close"].astype(float), "adj_close": rows["adj_close"].astype(float), "volume": rows["volume"].astype(float),
    })


def covered_tickers(conn: psycopg.Connection[Any], table: str, requests: list[FetchRequest], stored: dict[str, int]) -> set[str]:
    """Tickers whose request range was fetched before, or has every NYSE session of it stored.

    ``stored`` counts the bars already stored per ticker within its request range.
    """
    if not requests:
        return set()
    fetched = fetched_ranges(conn, table, [r.symbol for r in requests])
    done = set()
    for r in requests:
        if any(s <= r.start and e >= r.end for s, e in fetched.get(r.symbol, [])) or stored.get(r.symbol, 0) >= session_count(r.start,
                                                                                                                              r.end):
            done.add(r.symbol)
    return done


def stored_counts(conn: psycopg.Connection[Any], table: str, requests: list[FetchRequest]) -> dict[str, int]:
    """Bars stored per ticker within its request's range."""
    query = sql.SQL("SELECT r.ticker, count(b.trade_date) FROM unnest(%s::text[], %s::date[], %s::date[]) AS r(ticker, s, e)"
                    " LEFT JOIN {} b ON b.ticker = r.ticker AND b.trade_date BETWEEN r.s AND r.e GROUP BY r.ticker"
                    ).format(sql.Identifier(table))
    rows = conn.execute(query, ([r.symbol for r in requests], [r.start for r in requests], [r.end for r in requests]))
    return {str(t): int(n) for t, n in rows}


def bar_counts(bars: pd.DataFrame) -> dict[str, int]:
    """Bars per ticker of a frame from ``load_group_bars``."""
    return {} if bars.empty else {str(t): int(n) for t, n in bars.groupby("ticker").size().items()}


def fetched_ranges(conn: psycopg.Connection[Any], table: str, tickers: list[str]) -> dict[str, list[tuple[dt.date, dt.date]]]:
    """Date ranges already fetched from the source, per ticker."""
    out: dict[str, list[tuple[dt.date, dt.date]]] = {}
    rows = conn.execute(
        "SELECT ticker, start_date, end_date FROM price_fetch_coverage WHERE table_name = %s AND ticker = ANY(%s)", (table, tickers)
    )
    for ticker, start, end in rows:
        out.setdefault(ticker, []).append((start, end))
    return out


def obtain_bars(request: FetchRequest, *, cache: DownloadCache, source: BarSource | None, use_cache: bool = True) -> FetchResult:
    """Cache first, then the network (one fetch; written to the cache).

    Raises:
        RateLimited: the source answered 429.
        SourceError: no usable data (unknown ticker, or transient failures beyond the retries).
    """
    if use_cache:
        cached = cache.get(request)
        if cached is not None:
            return cached
    if source is None:
        raise SourceError(request.symbol, "not in cache and no source available")
    result = source.fetch(request)
    cache.put(result)
    return result


def record_coverage(conn: psycopg.Connection[Any], table: str, request: FetchRequest) -> None:
    """Remember that ``request``'s range was fetched (also when the source had nothing for it)."""
    conn.execute(
        "INSERT INTO price_fetch_coverage (table_name, ticker, start_date, end_date) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (table_name, ticker, start_date, end_date) DO UPDATE SET fetched_at = now()",
        (table, request.symbol, request.start, request.end),
    )


def store_fetched(conn: psycopg.Connection[Any], table: str, results: list[FetchResult]) -> None:
    """Bars, corporate actions and fetched ranges of several downloads, in one transaction
    (one COPY for all of them: far fewer round trips and temp tables than one per ticker).

    Raises:
        StoreError: nothing was written.
    """
    if not results:
        return
    with database_errors(f"storing bars of {len(results)} ticker(s) failed"):
        with conn.transaction():
            store_bars(conn, table, pd.concat([r.bars for r in results], ignore_index=True))
            actions = [r.actions for r in results if not r.actions.empty]
            if actions:
                store_actions(conn, pd.concat(actions, ignore_index=True))
            for result in results:
                record_coverage(conn, table, result.request)
