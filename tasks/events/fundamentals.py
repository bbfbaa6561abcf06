"""Valuation multiples at event time: market cap, P/E and P/S over the trailing four quarters.

No look-ahead: only statements *filed* on or before the event's date (New York) count, whatever
their period end. TTM = the four latest such quarters; ``pe_ttm`` = price at the event / TTM
diluted EPS (NULL when that is zero or negative), ``ps_ttm`` = market cap / TTM revenue, with the
market cap of the event's base session (the last one on or before it the provider has).

Work is per ticker, in ticker order, so a run stopped by the provider's daily quota continues the
next day where it left off: events of tickers not reached keep ``fundamentals_at`` NULL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from tasks.core.calendar import NY_TZ
from tasks.core.db import database_errors
from tasks.core.errors import RateLimited, SourceError, TransientSourceError
from tasks.sources.fmp import FmpClient, Quarter

# Events whose multiples are due: valued (they need price_at_event), and never given multiples or
# given them before their price valuation last changed.
DUE = sql.SQL("valuation_status = 'ok' AND (fundamentals_at IS NULL OR fundamentals_at < valued_at)")
TTM_QUARTERS = 4
DueTicker = tuple[str, int, dt.datetime, dt.datetime]  # ticker, events due, first and last event time


@dataclass
class FundamentalsSummary:
    tickers: int = 0
    events: int = 0
    filled: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # ticker → why it has no data (recorded; not asked again)
    transient: dict[str, str] = field(default_factory=dict)  # ticker → a transient failure (still due: the next run asks)
    stopped: RateLimited | None = None
    left: int = 0  # tickers not reached (stopped by a rate limit or the daily quota)

    def line(self, client: FmpClient) -> str:
        fails = f"; {len(self.failed)} ticker(s) without data ({', '.join(list(self.failed)[:5])})" if self.failed else ""
        left = f"; {self.left} ticker(s) left for the next run" if self.left else ""
        if self.transient:
            left += f"; {len(self.transient)} ticker(s) failed for now, retried next run ({', '.join(list(self.transient)[:5])})"
        return (f"Fundamentals (FMP): {self.events:,} events of {self.tickers:,} tickers; {self.filled:,} with multiples; "
                f"{client.network_requests} request(s), {client.cached_requests} from cache{fails}{left}")


def due_tickers(conn: psycopg.Connection[Any], *, overwrite: bool, tickers: list[str] | None = None) -> list[DueTicker]:
    """(ticker, events, first event, last event) of the tickers with events whose multiples are due."""
    where: sql.Composable = sql.SQL("valuation_status = 'ok'") if overwrite else DUE
    if tickers:
        where = sql.SQL("{} AND ticker = ANY(%(t)s)").format(where)
    query = sql.SQL("SELECT ticker, count(*), min(event_at), max(event_at) FROM events WHERE {} GROUP BY ticker ORDER BY ticker")
    return [(t, int(n), a, b) for t, n, a, b in conn.execute(query.format(where), {"t": tickers})]


def _events(conn: psycopg.Connection[Any], ticker: str, overwrite: bool) -> pd.DataFrame:
    where: sql.Composable = sql.SQL("valuation_status = 'ok'") if overwrite else DUE
    query = sql.SQL("SELECT event_id, event_at, base_date, price_at_event FROM events WHERE ticker = %s AND {}").format(where)
    rows = conn.execute(query,
                        (ticker,)).fetchall()
    return pd.DataFrame(rows, columns=["event_id", "event_time", "base_date", "price_at_event"])


def multiples(events: pd.DataFrame, quarters: list[Quarter], caps: dict[dt.date, float]) -> pd.DataFrame:
    """``market_cap, pe_ttm, ps_ttm`` per event (see module doc for the rules)."""
    cap_days = sorted(caps)
    out = []
    for event_id, event_time, base_date, price in events.itertuples(index=False):
        day = pd.Timestamp(event_time).tz_convert(NY_TZ).date()
        known = [q for q in quarters if q.filed <= day][-TTM_QUARTERS:]
        cap = None
        anchor = base_date or day
        earlier = [d for d in cap_days if d <= anchor]
        if earlier:
            cap = caps[earlier[-1]]
        pe = ps = None
        if len(known) == TTM_QUARTERS:
            eps = [q.eps_diluted for q in known]
            revenue = [q.revenue for q in known]
            if all(e is not None for e in eps) and price is not None:
                ttm_eps = sum(e for e in eps if e is not None)
                pe = float(price) / ttm_eps if ttm_eps > 0 else None
            if all(r is not None for r in revenue) and cap is not None:
                ttm_rev = sum(r for r in revenue if r is not None)
                ps = cap / ttm_rev if ttm_rev > 0 else None
        out.append((event_id, cap, pe, ps))
    return pd.DataFrame(out, columns=["event_id", "market_cap", "pe_ttm", "ps_ttm"])


def store_multiples(conn: psycopg.Connection[Any], frame: pd.DataFrame, error: str | None = None) -> None:
    """Write one ticker's multiples (or its error with NULLs) in one statement.

    Raises:
        StoreError: nothing was written.
    """
    def clean(values: pd.Series) -> list[float | None]:
        return [None if pd.isna(v) else float(v) for v in values]

    with database_errors("writing multiples failed"):
        conn.execute(
            "UPDATE events e SET market_cap = v.cap, pe_ttm = v.pe, ps_ttm = v.ps, fundamentals_at = now(), fundamentals_error = %s,"
            " run_id = coalesce(nullif(current_setting('market_backfill.run_id', true), '')::bigint, e.run_id)"
            " FROM unnest(%s::bigint[], %s::float8[], %s::float8[], %s::float8[]) AS v(id, cap, pe, ps) WHERE e.event_id = v.id",
            (error, [int(i) for i in frame["event_id"]], clean(frame["market_cap"]), clean(frame["pe_ttm"]), clean(frame["ps_ttm"])),
        )


def value_fundamentals(conn: psycopg.Connection[Any], client: FmpClient, *, overwrite: bool = False, tickers: list[str] | None = None,
                       progress: Callable[[str], None] | None = None) -> FundamentalsSummary:
    """Fill the multiples of every due event, ticker by ticker (two requests each, the income
    statement and the market cap history, cached 24 h).

    Stops at a rate limit or the end of the daily quota (``summary.stopped``); what was written stays.
    """
    work = due_tickers(conn, overwrite=overwrite, tickers=tickers)
    summary = FundamentalsSummary(tickers=len(work))
    for index, (ticker, _, first, last) in enumerate(work):
        events = _events(conn, ticker, overwrite)
        since, cap_start, cap_end = _spans(first, last)
        try:
            quarters = client.quarters(ticker, since)
            caps = client.market_caps(ticker, cap_start, cap_end)
        except RateLimited as exc:
            summary.stopped, summary.left = exc, len(work) - index
            break
        except TransientSourceError as exc:  # left due: the next run asks again
            summary.transient[ticker] = exc.reason
            continue
        except SourceError as exc:  # nothing usable there: recorded, not asked again until revalued
            summary.failed[ticker] = exc.reason
            store_multiples(conn, events.assign(market_cap=None, pe_ttm=None, ps_ttm=None), exc.reason)
            summary.events += len(events)
            continue
        frame = multiples(events, quarters, caps)
        store_multiples(conn, frame)
        summary.events += len(frame)
        summary.filled += int(frame[["market_cap", "pe_ttm", "ps_ttm"]].notna().any(axis=1).sum())
        if progress is not None:
            progress(f"fundamentals {index + 1}/{len(work)}: {ticker}")
    return summary


def fmp_requests_needed(client: FmpClient, work: list[tuple[str, int, dt.datetime, dt.datetime]]) -> tuple[int, int]:
    """(network requests, cached answers) a run over ``work`` would make: for dry runs."""
    network = cached = 0
    for ticker, _, first, last in work:
        since, cap_start, cap_end = _spans(first, last)
        for path, params in (client.quarters_request(ticker, since), client.caps_request(ticker, cap_start, cap_end)):
            if client.is_cached(path, params):
                cached += 1
            else:
                network += 1
    return network, cached


def _spans(first: dt.datetime, last: dt.datetime) -> tuple[dt.date, dt.date, dt.date]:
    """For a ticker's events: the quarters to ask for (from 15 months before the first event, enough
    for four filed quarters) and the market-cap dates (from 10 days before the first to the last)."""
    first_day = pd.Timestamp(first).tz_convert(NY_TZ).date()
    last_day = pd.Timestamp(last).tz_convert(NY_TZ).date()
    return first_day - dt.timedelta(days=450), first_day - dt.timedelta(days=10), last_day
