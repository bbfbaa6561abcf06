"""The portfolio: the stocks of the top-ranked sectors, weighted by their market capitalization *as of
the date*: the shares outstanding known on that date times that date's close. Never today's cap
for a past date (look-ahead); weights sum to 1 for each as-of date.

A stock held by two of the chosen sectors counts once, under the better-ranked sector. Shares
outstanding history comes from Yahoo (``shares_outstanding``), fetched once per stock
and as-of date at most; a stock with no figure known on the date is left out, and said so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tasks.core.db import database_errors
from tasks.core.errors import MissingInputs
from tasks.pipeline.holdings import Snapshot, first_fund, latest_holdings
from tasks.pipeline.trending import top_sectors
from tasks.prices.store import STOCK_TABLE

SHARES_LOOKBACK_DAYS = 548  # 18 months: at least one reported figure before any date
PRICE_STALE_DAYS = 7  # a close older than this before the as-of date is no price for it


def sector_members(conn: psycopg.Connection[Any], sectors: list[str], as_of: dt.date) -> dict[str, Snapshot]:
    """The holdings snapshot used for each of ``sectors`` on ``as_of``.

    Raises:
        MissingInputs: a sector has no holdings stored (run stage 2 first).
    """
    snapshots = latest_holdings(conn, sectors, as_of)
    lacking = [etf for etf in sectors if etf not in snapshots or not snapshots[etf].holdings]
    if lacking:
        raise MissingInputs(f"no holdings stored for {', '.join(lacking)}: run stage 2 (etf-holdings) first", "etf-holdings")
    return snapshots


def selected_stocks(conn: psycopg.Connection[Any], as_of: dt.date, sectors: int) -> list[tuple[str, str]]:
    """(stock, sector fund) for the holdings of the ``sectors`` best-ranked sectors on ``as_of``, each stock once.

    Raises:
        MissingInputs: no ranking (stage 3) or no holdings (stage 2) for those sectors.
    """
    chosen = top_sectors(conn, as_of, sectors)
    return list(first_fund(sector_members(conn, chosen, as_of), chosen).items())


def cap_weights(caps: dict[str, float]) -> dict[str, float]:
    """Market-cap weights that sum to 1."""
    total = sum(caps.values())
    if not caps or total <= 0:
        return {}
    return {t: c / total for t, c in caps.items()}


def require_history(conn: psycopg.Connection[Any], stocks: list[str], as_of: dt.date) -> None:
    """Each stock needs a close on or within a week before ``as_of``.

    Raises:
        MissingInputs: some have none (run stage 4 first).
    """
    have = set(closes_on(conn, stocks, as_of))
    lacking = [s for s in stocks if s not in have]
    if lacking:
        shown = ", ".join(lacking[:10]) + (f" (+{len(lacking) - 10} more)" if len(lacking) > 10 else "")
        raise MissingInputs(f"no stock history up to {as_of} for {shown}: run stage 4 (stock-history) first", "stock-history")


def closes_on(conn: psycopg.Connection[Any], stocks: list[str], as_of: dt.date) -> dict[str, tuple[dt.date, float]]:
    """Each stock's last close on or before ``as_of`` (within ``PRICE_STALE_DAYS``): (its date, close)."""
    query = sql.SQL("SELECT DISTINCT ON (ticker) ticker, trade_date, close FROM {} WHERE ticker = ANY(%s)"
                    " AND trade_date BETWEEN %s AND %s AND close IS NOT NULL ORDER BY ticker, trade_date DESC")
    rows = conn.execute(query.format(sql.Identifier(STOCK_TABLE)), (stocks, as_of - dt.timedelta(days=PRICE_STALE_DAYS), as_of))
    return {t: (d, float(c)) for t, d, c in rows}


def shares_due(conn: psycopg.Connection[Any], stocks: list[str], as_of: dt.date) -> list[str]:
    """Stocks whose shares-outstanding history was never fetched through ``as_of``."""
    done = {r[0] for r in conn.execute("SELECT ticker FROM shares_outstanding_fetches WHERE ticker = ANY(%s) AND fetched_through >= %s",
                                       (stocks, as_of))}
    return [s for s in stocks if s not in done]


def store_shares(conn: psycopg.Connection[Any], ticker: str, as_of: dt.date, observed: list[tuple[dt.date, float]]) -> None:
    """Keep a stock's reported share counts and that its history is known through ``as_of`` (one transaction).

    Raises:
        StoreError: nothing was written.
    """
    with database_errors(f"writing {ticker} shares outstanding failed"):
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany("INSERT INTO shares_outstanding (ticker, observed_date, shares) VALUES (%s, %s, %s)"
                            " ON CONFLICT (ticker, observed_date) DO UPDATE SET shares = excluded.shares, fetched_at = now(),"
                            " run_id = coalesce(excluded.run_id, shares_outstanding.run_id)",
                            [(ticker, day, shares) for day, shares in observed])
            cur.execute("INSERT INTO shares_outstanding_fetches (ticker, fetched_through) VALUES (%s, %s) ON CONFLICT (ticker)"
                        " DO UPDATE SET fetched_through = greatest(shares_outstanding_fetches.fetched_through, excluded.fetched_through),"
                        " fetched_at = now()", (ticker, as_of))


def shares_known_on(conn: psycopg.Connection[Any], stocks: list[str], as_of: dt.date) -> dict[str, tuple[dt.date, float]]:
    """Each stock's latest reported share count on or before ``as_of``: (reported on, shares)."""
    rows = conn.execute("SELECT DISTINCT ON (ticker) ticker, observed_date, shares FROM shares_outstanding"
                        " WHERE ticker = ANY(%s) AND observed_date <= %s ORDER BY ticker, observed_date DESC", (stocks, as_of))
    return {t: (d, float(n)) for t, d, n in rows}


@dataclass(frozen=True)
class Position:
    ticker: str
    sector_ticker: str
    shares: float
    shares_as_of_date: dt.date
    close: float
    price_date: dt.date

    @property
    def market_cap(self) -> float:
        return self.shares * self.close


def positions(conn: psycopg.Connection[Any], stocks: list[tuple[str, str]], as_of: dt.date) -> tuple[list[Position], list[str]]:
    """The point-in-time inputs of each stock, and the stocks lacking a share count or a close on ``as_of``."""
    tickers = [s for s, _ in stocks]
    shares = shares_known_on(conn, tickers, as_of)
    closes = closes_on(conn, tickers, as_of)
    out, lacking = [], []
    for ticker, etf in stocks:
        if ticker in shares and ticker in closes:
            out.append(Position(ticker, etf, shares[ticker][1], shares[ticker][0], closes[ticker][1], closes[ticker][0]))
        else:
            lacking.append(ticker)
    return out, lacking


def store_allocation(conn: psycopg.Connection[Any], as_of: dt.date, held: list[Position], weights: dict[str, float]) -> None:
    """Replace ``as_of``'s portfolio with ``held`` weighted by ``weights`` in one transaction.

    Raises:
        StoreError: nothing was written.
    """
    with database_errors("writing the portfolio failed"):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("DELETE FROM portfolio_allocation WHERE as_of_date = %s", (as_of,))
            cur.executemany("INSERT INTO portfolio_allocation (as_of_date, ticker, sector_ticker, market_cap, portfolio_weight,"
                            " shares_outstanding, shares_as_of_date, close, price_date) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            [(as_of, p.ticker, p.sector_ticker, p.market_cap, weights[p.ticker], p.shares, p.shares_as_of_date, p.close,
                              p.price_date) for p in held])
