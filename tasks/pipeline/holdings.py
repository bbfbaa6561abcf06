"""Sector fund holdings (``etf_holdings``): one snapshot per fund and date, from the sponsor's
daily file (every constituent, with the shares the fund holds) or, as a fallback, Yahoo's top holdings."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import psycopg

from tasks.core.db import database_errors
from tasks.core.errors import BadInput
from tasks.core.tickers import validate_ticker

SPONSOR = "ssga"
FALLBACK = "yahoo"


def store_holdings(conn: psycopg.Connection[Any], etf: str, as_of: dt.date, holdings: pd.DataFrame, source: str) -> int:
    """Replace ``etf``'s snapshot for ``as_of`` with ``holdings`` in one transaction; returns the rows written.

    ``holdings``: ``holding, name, weight`` (a fraction), and from the sponsor also ``sponsor_symbol``
    and ``shares_held``. Symbols that are not valid tickers are dropped.

    Raises:
        StoreError: nothing was written.
    """
    rows = []
    for record in holdings.to_dict("records"):
        try:
            symbol = validate_ticker(str(record["holding"]))
        except BadInput:
            continue
        shares = record.get("shares_held")
        shares = None if shares is None or (isinstance(shares, float) and math.isnan(shares)) else round(float(shares))  # whole shares
        rows.append((etf, as_of, symbol, str(record["name"]), float(record["weight"]), record.get("sponsor_symbol"), shares, source))
    with database_errors(f"writing {etf} holdings failed"):
        with conn.transaction():
            conn.execute("DELETE FROM etf_holdings WHERE etf_ticker = %s AND as_of_date = %s", (etf, as_of))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO etf_holdings (etf_ticker, as_of_date, ticker, holding_name, weight, sponsor_ticker,"
                                " shares_held, source) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    return len(rows)


@dataclass(frozen=True)
class Snapshot:
    """A fund's holdings as used for an as-of date: ``(symbol, weight)`` heaviest first."""

    etf: str
    as_of: dt.date  # the snapshot's own date
    source: str
    holdings: list[tuple[str, float]]


def latest_holdings(conn: psycopg.Connection[Any], etfs: list[str] | tuple[str, ...], as_of: dt.date) -> dict[str, Snapshot]:
    """Each fund's latest snapshot on or before ``as_of``; a fund with none before it gets its earliest
    later snapshot (a past as-of date run today has only today's file: its ``as_of`` says so)."""
    rows = conn.execute(
        "SELECT m.etf_ticker, m.as_of_date, m.source, m.ticker, m.weight FROM etf_holdings m"
        " JOIN (SELECT etf_ticker, coalesce(max(as_of_date) FILTER (WHERE as_of_date <= %(d)s), min(as_of_date)) AS d"
        "       FROM etf_holdings WHERE etf_ticker = ANY(%(etfs)s) GROUP BY etf_ticker) l"
        " ON m.etf_ticker = l.etf_ticker AND m.as_of_date = l.d ORDER BY m.etf_ticker, m.weight DESC, m.ticker",
        {"etfs": list(etfs), "d": as_of},
    )
    grouped: dict[str, tuple[dt.date, str, list[tuple[str, float]]]] = {}
    for etf, day, source, holding, weight in rows:
        grouped.setdefault(etf, (day, source, []))[2].append((holding, float(weight)))
    return {etf: Snapshot(etf, day, source, items) for etf, (day, source, items) in grouped.items()}


def first_fund(snapshots: dict[str, Snapshot], funds: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Each stock held by ``funds`` (in that order) → the first of them that holds it: a stock held
    by two funds counts once."""
    out: dict[str, str] = {}
    for etf in funds:
        for stock, _ in snapshots[etf].holdings if etf in snapshots else []:
            out.setdefault(stock, etf)
    return out


def later_snapshots(snapshots: dict[str, Snapshot], as_of: dt.date) -> str | None:
    """A note when some snapshot postdates ``as_of`` (holdings known only later), else None."""
    late = sorted(f"{s.etf} {s.as_of}" for s in snapshots.values() if s.as_of > as_of)
    return f"no holdings snapshot on or before {as_of} for {', '.join(late)}: the later one is used" if late else None
