"""Which sectors lead: each sector ETF's return over 5, 10 and 20 sessions minus SPY's, ranked.

Returns use ``adj_close`` (dividends included) between the as-of session and the session ``w``
bars before it; rank 1 is the strongest within a window (ties broken by ticker).
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
from tasks.prices.store import ETF_TABLE

WINDOWS = (5, 10, 20)


def relative_returns(adj: pd.DataFrame, windows: tuple[int, ...] = WINDOWS) -> pd.DataFrame:
    """``adj``: adj_close by session (rows, oldest first) and ticker (columns, SPY among them).

    Returns ``ticker, window, relative_return, rank`` for every non-SPY column.
    """
    out = []
    last = adj.iloc[-1]
    for w in windows:
        ret = last / adj.iloc[-1 - w] - 1
        rel = (ret.drop(BENCHMARK) - ret[BENCHMARK]).rename("relative_return").reset_index().rename(columns={"index": "ticker"})
        rel = rel.sort_values(["relative_return", "ticker"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
        rel["window"] = w
        rel["rank"] = range(1, len(rel) + 1)
        out.append(rel)
    return pd.concat(out, ignore_index=True)[["ticker", "window", "relative_return", "rank"]]


def load_adjusted(conn: psycopg.Connection[Any], as_of: dt.date, tickers: list[str], sessions: int) -> pd.DataFrame:
    """adj_close of ``tickers`` on the ``sessions`` NYSE sessions ending at ``as_of``.

    Raises:
        MissingInputs: a ticker lacks a bar on one of those sessions (run the ETF OHLC stage first).
    """
    days = sessions_back(sessions, as_of)
    query = sql.SQL("SELECT ticker, trade_date, coalesce(adj_close, close) FROM {} WHERE ticker = ANY(%s) AND trade_date = ANY(%s)")
    rows = conn.execute(query.format(sql.Identifier(ETF_TABLE)), (tickers, days)).fetchall()
    frame = pd.DataFrame(rows, columns=["ticker", "trade_date", "adj"]).pivot(index="trade_date", columns="ticker", values="adj")
    frame = frame.reindex(index=days, columns=tickers)
    missing = {t: int(frame[t].isna().sum()) for t in tickers if frame[t].isna().any()}
    if missing:
        shown = ", ".join(f"{t} ({n})" for t, n in sorted(missing.items()))
        raise MissingInputs(f"ETF bars missing for the {sessions} sessions {days[0]} .. {days[-1]}: {shown}; "
                            f"run stage 1 (etf-ohlc) with --days {sessions} or more first")
    return frame.astype(float)


def compute_trending(conn: psycopg.Connection[Any], as_of: dt.date) -> pd.DataFrame:
    """Rank the sector ETFs on ``as_of`` and store the ranking (replacing that date's rows) in one transaction.

    Raises:
        MissingInputs: bars are missing (nothing written).
        StoreError: the write failed.
    """
    tickers = [BENCHMARK, *SECTOR_ETFS]
    ranked = relative_returns(load_adjusted(conn, as_of, tickers, max(WINDOWS) + 1))
    with database_errors("writing the sector ranking failed"):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("DELETE FROM analytics_trending_sectors WHERE as_of_date = %s", (as_of,))
            cur.executemany(
                'INSERT INTO analytics_trending_sectors (as_of_date, ticker, "window", relative_return, rank) VALUES (%s, %s, %s, %s, %s)',
                [(as_of, t, int(w), float(r), int(k)) for t, w, r, k in ranked.itertuples(index=False)],
            )
    return ranked


def top_sectors(conn: psycopg.Connection[Any], as_of: dt.date, count: int, window: int = max(WINDOWS)) -> list[str]:
    """The ``count`` best-ranked sector ETFs on ``as_of`` in ``window``.

    Raises:
        MissingInputs: no ranking for that date (run stage 3 first).
    """
    rows = conn.execute('SELECT ticker FROM analytics_trending_sectors WHERE as_of_date = %s AND "window" = %s ORDER BY rank LIMIT %s',
                        (as_of, window, count)).fetchall()
    if not rows:
        raise MissingInputs(f"no sector ranking for {as_of}: run stage 3 (trending) first")
    return [r[0] for r in rows]
