"""Which sectors lead, and within the leading sectors which stocks: each one's return over 5, 10
and 20 sessions minus SPY's over the same sessions, ranked.

Returns use ``adj_close`` (dividends included) between the as-of session and the session ``w``
bars before it; rank 1 is the strongest within a window (ties broken by ticker). Each ranking is
stored with its inputs (first session, both prices, both returns), so any row can be rechecked.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from tasks.core.calendar import sessions_back
from tasks.core.db import database_errors
from tasks.core.errors import MissingInputs
from tasks.core.tickers import BENCHMARK, SECTOR_ETFS
from tasks.prices.store import ETF_TABLE, STOCK_TABLE

WINDOWS = (5, 10, 20)
RANK_COLUMNS = ["ticker", "window_sessions", "start_date", "start_adj_close", "end_adj_close", "own_return", "benchmark_return",
                "relative_return", "rank"]


def relative_returns(adj: pd.DataFrame, windows: tuple[int, ...] = WINDOWS) -> pd.DataFrame:
    """``adj``: adj_close by session (rows, oldest first) and ticker (columns, SPY among them).

    Returns ``RANK_COLUMNS`` for every non-SPY column, ranked within each window.
    """
    out = []
    last = adj.iloc[-1]
    for w in windows:
        first = adj.iloc[-1 - w]
        own = last / first - 1
        rel = pd.DataFrame({"ticker": [t for t in adj.columns if t != BENCHMARK]})
        rel["window_sessions"] = w
        rel["start_date"] = adj.index[-1 - w]
        rel["start_adj_close"] = first[rel["ticker"]].to_numpy()
        rel["end_adj_close"] = last[rel["ticker"]].to_numpy()
        rel["own_return"] = own[rel["ticker"]].to_numpy()
        rel["benchmark_return"] = float(own[BENCHMARK])
        rel["relative_return"] = rel["own_return"] - rel["benchmark_return"]
        rel = rel.sort_values(["relative_return", "ticker"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
        rel["rank"] = range(1, len(rel) + 1)
        out.append(rel)
    return pd.concat(out, ignore_index=True)[RANK_COLUMNS]


def load_adjusted(conn: psycopg.Connection[Any], table: str, as_of: dt.date, tickers: list[str], sessions: int) -> pd.DataFrame:
    """adj_close of ``tickers`` on the ``sessions`` NYSE sessions ending at ``as_of`` (NaN where a bar is missing)."""
    days = sessions_back(sessions, as_of)
    query = sql.SQL("SELECT ticker, trade_date, coalesce(adj_close, close) FROM {} WHERE ticker = ANY(%s) AND trade_date = ANY(%s)")
    rows = conn.execute(query.format(sql.Identifier(table)), (tickers, days)).fetchall()
    frame = pd.DataFrame(rows, columns=["ticker", "trade_date", "adj"]).pivot(index="trade_date", columns="ticker", values="adj")
    return frame.reindex(index=days, columns=tickers).astype(float)


def sector_prices(conn: psycopg.Connection[Any], as_of: dt.date) -> pd.DataFrame:
    """SPY's and the sector funds' adj_close over the 21 sessions the rankings need.

    Raises:
        MissingInputs: a fund lacks a bar on one of those sessions (run the ETF OHLC stage first).
    """
    sessions = max(WINDOWS) + 1
    frame = load_adjusted(conn, ETF_TABLE, as_of, [BENCHMARK, *SECTOR_ETFS], sessions)
    missing = {t: int(frame[t].isna().sum()) for t in frame.columns if frame[t].isna().any()}
    if missing:
        shown = ", ".join(f"{t} ({n})" for t, n in sorted(missing.items()))
        raise MissingInputs(f"ETF bars missing for the {sessions} sessions {frame.index[0]} .. {frame.index[-1]}: {shown}; "
                            f"run stage 1 (etf-ohlc) with --days {sessions} or more first", "etf-ohlc")
    return frame


def _store(conn: psycopg.Connection[Any], table: str, as_of: dt.date, ranked: pd.DataFrame, extra: list[str]) -> None:
    columns = ["as_of_date", *RANK_COLUMNS[:1], *extra, *RANK_COLUMNS[1:]]
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.SQL(", ").join(sql.Placeholder() * len(columns)))
    values = [(as_of, *row) for row in ranked[[*RANK_COLUMNS[:1], *extra, *RANK_COLUMNS[1:]]].itertuples(index=False)]
    values = [tuple(v.item() if hasattr(v, "item") else v for v in row) for row in values]  # numpy scalars → Python
    with database_errors(f"writing {table} failed"):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(sql.SQL("DELETE FROM {} WHERE as_of_date = %s").format(sql.Identifier(table)), (as_of,))
            cur.executemany(insert, values)


def compute_trending(conn: psycopg.Connection[Any], as_of: dt.date) -> pd.DataFrame:
    """Rank the sector funds on ``as_of`` and store the ranking (replacing that date's rows) in one transaction.

    Raises:
        MissingInputs: bars are missing (nothing written).
        StoreError: the write failed.
    """
    ranked = relative_returns(sector_prices(conn, as_of))
    _store(conn, "trending_sectors", as_of, ranked, [])
    return ranked


def leaders(ranked: pd.DataFrame, count: int, window: int = max(WINDOWS)) -> list[str]:
    """The ``count`` best-ranked tickers of a ranking in ``window``."""
    return list(ranked[ranked["window_sessions"] == window].sort_values("rank")["ticker"].head(count))


def top_sectors(conn: psycopg.Connection[Any], as_of: dt.date, count: int, window: int = max(WINDOWS)) -> list[str]:
    """The ``count`` best-ranked sector funds stored for ``as_of`` in ``window``.

    Raises:
        MissingInputs: no ranking for that date (run stage 3 first).
    """
    rows = conn.execute("SELECT ticker FROM trending_sectors WHERE as_of_date = %s AND window_sessions = %s ORDER BY rank LIMIT %s",
                        (as_of, window, count)).fetchall()
    if not rows:
        raise MissingInputs(f"no sector ranking for {as_of}: run stage 3 (trending) first", "trending")
    return [r[0] for r in rows]


def compute_trending_stocks(conn: psycopg.Connection[Any], as_of: dt.date, sectors: dict[str, list[str]]) -> tuple[pd.DataFrame, list[str]]:
    """Rank each top sector's stocks on ``as_of`` against SPY and store them (that date's rows replaced).

    ``sectors``: sector fund → its stocks. A stock without a bar on every session of the windows is
    left out and returned in the second element.

    Raises:
        MissingInputs: SPY's bars are missing (run stage 1 first).
        StoreError: the write failed.
    """
    sessions = max(WINDOWS) + 1
    spy = load_adjusted(conn, ETF_TABLE, as_of, [BENCHMARK], sessions)
    if spy[BENCHMARK].isna().any():
        raise MissingInputs(f"SPY bars missing for the {sessions} sessions to {as_of}: run stage 1 (etf-ohlc) first", "etf-ohlc")
    stocks = sorted({s for members in sectors.values() for s in members if s != BENCHMARK})
    prices = load_adjusted(conn, STOCK_TABLE, as_of, stocks, sessions)
    lacking = sorted(t for t in stocks if prices[t].isna().any())
    parts = []
    for etf, members in sectors.items():
        usable = [s for s in dict.fromkeys(members) if s not in lacking and s != BENCHMARK]
        if not usable:
            continue
        ranked = relative_returns(pd.concat([prices[usable], spy], axis=1))
        ranked.insert(1, "sector_ticker", etf)
        parts.append(ranked)
    ranked = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[RANK_COLUMNS[0], "sector_ticker", *RANK_COLUMNS[1:]])
    ranked = ranked.drop_duplicates(["ticker", "window_sessions"], keep="first")  # a stock in two top sectors: ranked in the better one
    _store(conn, "trending_stocks", as_of, ranked, ["sector_ticker"])
    return ranked, lacking
