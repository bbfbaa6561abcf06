"""The portfolio: the holdings of the top-ranked sectors, weighted by market capitalization.

A stock held by two of the chosen sectors counts once, under the better-ranked sector. Weights
are market cap / the sum of market caps, so they sum to 1 for each as-of date.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg

from tasks.core.db import database_errors
from tasks.core.errors import MissingInputs
from tasks.pipeline.holdings import latest_holdings
from tasks.pipeline.trending import top_sectors


def selected_stocks(conn: psycopg.Connection[Any], as_of: dt.date, sectors: int) -> list[tuple[str, str]]:
    """(stock, sector ETF) for the holdings of the ``sectors`` best-ranked sectors on ``as_of``.

    Raises:
        MissingInputs: no ranking (stage 3) or no holdings (stage 2) for those sectors.
    """
    chosen = top_sectors(conn, as_of, sectors)
    holdings = latest_holdings(conn, chosen, as_of)
    lacking = [etf for etf in chosen if not holdings.get(etf)]
    if lacking:
        raise MissingInputs(f"no holdings stored for {', '.join(lacking)} on or before {as_of}: run stage 2 (etf-holdings) first")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for etf in chosen:
        for stock, _ in holdings[etf]:
            if stock not in seen:
                seen.add(stock)
                out.append((stock, etf))
    return out


def cap_weights(caps: dict[str, float]) -> dict[str, float]:
    """Market-cap weights that sum to 1."""
    total = sum(caps.values())
    if not caps or total <= 0:
        return {}
    return {t: c / total for t, c in caps.items()}


def require_history(conn: psycopg.Connection[Any], table: str, stocks: list[str], as_of: dt.date) -> None:
    """Stage 5 weights the stocks stage 4 stored: each needs a bar on or within a week before ``as_of``.

    Raises:
        MissingInputs: some have none (run stage 4 first).
    """
    from psycopg import sql

    query = sql.SQL("SELECT DISTINCT ticker FROM {} WHERE ticker = ANY(%s) AND trade_date BETWEEN %s AND %s").format(sql.Identifier(table))
    have = {r[0] for r in conn.execute(query, (stocks, as_of - dt.timedelta(days=7), as_of))}
    lacking = [s for s in stocks if s not in have]
    if lacking:
        shown = ", ".join(lacking[:10]) + (f" (+{len(lacking) - 10} more)" if len(lacking) > 10 else "")
        raise MissingInputs(f"no stock history up to {as_of} for {shown}: run stage 4 (stock-history) first")


def store_allocation(conn: psycopg.Connection[Any], as_of: dt.date, rows: list[tuple[str, str, float, float]]) -> None:
    """Replace ``as_of``'s portfolio with ``rows`` (ticker, sector ETF, market cap, weight) in one transaction.

    Raises:
        StoreError: nothing was written.
    """
    with database_errors("writing the portfolio failed"):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("DELETE FROM analytics_portfolio_allocation WHERE as_of_date = %s", (as_of,))
            cur.executemany("INSERT INTO analytics_portfolio_allocation (as_of_date, ticker, sector_etf, market_cap, weight)"
                            " VALUES (%s, %s, %s, %s, %s)", [(as_of, *row) for row in rows])
