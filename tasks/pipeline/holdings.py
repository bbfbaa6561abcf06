"""Top holdings of the sector ETFs (``collected_meta_etf``): fetched per fund, stored per as-of date."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import psycopg

from tasks.core.db import database_errors
from tasks.core.errors import BadInput
from tasks.core.tickers import validate_ticker


def store_holdings(conn: psycopg.Connection[Any], etf: str, as_of: dt.date, holdings: pd.DataFrame) -> int:
    """Replace ``etf``'s holdings for ``as_of`` with ``holdings`` (holding, name, weight) in one transaction.

    Holdings whose symbol is not a valid ticker are dropped (funds list cash lines and the like).

    Raises:
        StoreError: nothing was written.
    """
    rows = []
    for holding, name, weight in holdings[["holding", "name", "weight"]].itertuples(index=False):
        try:
            rows.append((etf, as_of, validate_ticker(str(holding)), str(name), float(weight)))
        except BadInput:
            continue
    with database_errors(f"writing {etf} holdings failed"):
        with conn.transaction():
            conn.execute("DELETE FROM collected_meta_etf WHERE etf = %s AND as_of_date = %s", (etf, as_of))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO collected_meta_etf (etf, as_of_date, holding, holding_name, weight)"
                                " VALUES (%s, %s, %s, %s, %s)",
                                rows)
    return len(rows)


def latest_holdings(conn: psycopg.Connection[Any], etfs: list[str], as_of: dt.date) -> dict[str, list[tuple[str, float]]]:
    """Each fund's holdings (symbol, weight) from its latest snapshot on or before ``as_of``, heaviest first."""
    rows = conn.execute(
        "SELECT m.etf, m.holding, m.weight FROM collected_meta_etf m"
        " JOIN (SELECT etf, max(as_of_date) AS d FROM collected_meta_etf WHERE etf = ANY(%s) AND as_of_date <= %s GROUP BY etf) l"
        " ON m.etf = l.etf AND m.as_of_date = l.d ORDER BY m.etf, m.weight DESC, m.holding",
        (etfs, as_of),
    )
    out: dict[str, list[tuple[str, float]]] = {}
    for etf, holding, weight in rows:
        out.setdefault(etf, []).append((holding, float(weight)))
    return out
