"""One ticker group of the event valuation: load its pending events, make sure each ticker's
bars are stored (database → cache → one network fetch), compute the metrics in bulk, and write
them with one COPY and one ``UPDATE ... FROM`` in a single transaction.

A group either writes all the valuations it computed or none. A 429 stops the group (and, via
the shared tripped session, every other group) without writing anything for the tickers not
reached; their events stay pending for the next run.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import psycopg

from tasks.cache import DownloadCache
from tasks.db import connect
from tasks.errors import RateLimited, SourceError, StoreError, TransientSourceError
from tasks.events import load_pending_events
from tasks.prices import coverage, is_covered, load_bars, obtain_bars, price_request, record_coverage, store_fetched
from tasks.source import YahooSource
from tasks.store import statement
from tasks.types import FetchRequest
from tasks.valuation import METRIC_COLUMNS, value_events

STAGE_COLUMNS = ("event_id", *METRIC_COLUMNS, "valuation_status", "valuation_error")


@dataclass(frozen=True)
class ValuationGroup:
    """A slice of the tickers, valued by one task."""

    index: int
    tickers: tuple[str, ...]
    events: int


@dataclass
class GroupResult:
    index: int
    tickers: int = 0
    ok: int = 0
    no_data: int = 0
    error: int = 0
    fetched: int = 0
    from_cache: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    rate_limited: RateLimited | None = None
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return self.ok + self.no_data + self.error


@dataclass
class ValuationContext:
    """What every group shares (thread-safe: the source paces and trips for all of them)."""

    dsn: str
    table: str
    cache: DownloadCache
    spy: pd.Series
    last_closed: dt.date
    overwrite: bool = False
    refresh: bool = False
    source_factory: Callable[[], YahooSource] | None = None
    _source: YahooSource | None = None

    def source(self) -> YahooSource:
        if self._source is None:
            if self.source_factory is None:
                raise SourceError("*", "no network source configured")
            self._source = self.source_factory()
        return self._source


def make_groups(work: list[tuple[str, int]], group_size: int) -> list[ValuationGroup]:
    """Consecutive slices of ``group_size`` tickers (``work`` = (ticker, events) pairs)."""
    groups: list[ValuationGroup] = []
    for i in range(0, len(work), group_size):
        chunk = work[i : i + group_size]
        groups.append(ValuationGroup(len(groups), tuple(t for t, _ in chunk), sum(n for _, n in chunk)))
    return groups


def default_group_size(tickers: int, target_groups: int = 40) -> int:
    """Tickers per group so that a run has about ``target_groups`` tasks (tens, not thousands)."""
    return max(1, math.ceil(tickers / target_groups))


def value_group(group: ValuationGroup, ctx: ValuationContext) -> GroupResult:
    """Value one group (see module doc).

    Raises:
        StoreError: the database failed; nothing of the group's valuations was written.
    """
    started = time.perf_counter()
    result = GroupResult(group.index, tickers=len(group.tickers))
    with connect(ctx.dsn, autocommit=True) as conn:
        events = pd.DataFrame(load_pending_events(conn, list(group.tickers), overwrite=ctx.overwrite),
                              columns=["event_id", "ticker", "event_time"])
        if events.empty:
            return result
        spans = events.groupby("ticker")["event_time"].agg(["min", "max"])
        requests = {str(t): price_request(str(t), row["min"], row["max"], ctx.last_closed) for t, row in spans.iterrows()}
        starts = [r.start for r in requests.values() if r]
        ends = [r.end for r in requests.values() if r]
        bars = load_bars(conn, ctx.table, list(spans.index), min(starts), max(ends)) if starts else {}
        fetched = coverage(conn, ctx.table, list(spans.index))
        frames: list[pd.DataFrame] = []
        for key, group_events in events.groupby("ticker", sort=True):
            ticker = str(key)
            request = requests.get(ticker)
            status, error = "ok", None
            if request is not None and not is_covered(request, fetched.get(ticker, []), bars.get(ticker)):
                try:
                    got = obtain_bars(request, cache=ctx.cache, source=ctx.source(), use_cache=not ctx.refresh)
                    store_fetched(conn, ctx.table, got)
                    result.from_cache += got.from_cache
                    result.fetched += not got.from_cache
                    bars[ticker] = load_bars(conn, ctx.table, [ticker], request.start, request.end).get(ticker, pd.DataFrame())
                except RateLimited as exc:
                    result.rate_limited = exc
                    break
                except TransientSourceError as exc:
                    status, error = "error", exc.reason
                except SourceError as exc:  # a definitive "nothing there": don't ask again for this range
                    status, error = "no_data", exc.reason
                    record_coverage(conn, ctx.table, request)
            ticker_bars = bars.get(ticker)
            frames.append(_metrics(group_events, ticker_bars, ctx.spy, status, error))
            if status != "ok":
                result.failed[ticker] = error or status
        if frames:
            valued = pd.concat(frames, ignore_index=True)
            write_valuations(conn, valued)
            counts = valued["valuation_status"].value_counts()
            result.ok, result.no_data, result.error = (int(counts.get(k, 0)) for k in ("ok", "no_data", "error"))
    result.seconds = time.perf_counter() - started
    return result


def _metrics(events: pd.DataFrame, bars: pd.DataFrame | None, spy: pd.Series, status: str, error: str | None) -> pd.DataFrame:
    ids = events["event_id"].to_numpy()
    if status != "ok" or bars is None or bars.empty:
        frame = pd.DataFrame({"event_id": ids})
        for col in METRIC_COLUMNS:
            frame[col] = None
        frame["valuation_status"] = status if status != "ok" else "no_data"
        frame["valuation_error"] = error if status != "ok" else "no bars stored for this ticker"
        return frame
    metrics = value_events(events["event_time"].reset_index(drop=True), bars, spy)
    metrics.insert(0, "event_id", ids)
    no_base = metrics["base_date"].isna()
    metrics["valuation_status"] = ["no_data" if nb else "ok" for nb in no_base]
    metrics["valuation_error"] = ["no bar closed at or before the event" if nb else None for nb in no_base]
    return metrics


def write_valuations(conn: psycopg.Connection[Any], valued: pd.DataFrame) -> int:
    """COPY the metrics into a temp table and apply them with one UPDATE, in one transaction.

    Raises:
        StoreError: nothing was written.
    """
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(statement("stage_valuations"))  # type: ignore[arg-type]
            with cur.copy(f"COPY stage_valuations ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:  # type: ignore[arg-type]
                for row in valued[list(STAGE_COLUMNS)].itertuples(index=False, name=None):
                    copy.write_row([_clean(v) for v in row])
            cur.execute(statement("update_valuations"))  # type: ignore[arg-type]
            updated = cur.rowcount
            cur.execute("DROP TABLE stage_valuations")
    except psycopg.Error as exc:
        raise StoreError(f"writing {len(valued)} valuations failed: {str(exc).strip().splitlines()[0]}") from exc
    return updated


def _clean(value: object) -> object:
    if value is None:
        return None
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if value is pd.NaT:
        return None
    if hasattr(value, "item"):
        value = value.item()  # numpy scalar
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
    return value


def ensure_bars(conn: psycopg.Connection[Any], table: str, request: FetchRequest, ctx: ValuationContext) -> str:
    """Make sure ``request``'s bars are stored; return "stored", "cache" or "network".

    Raises:
        RateLimited, SourceError: the fetch failed.
        StoreError: the write failed.
    """
    fetched = coverage(conn, table, [request.symbol]).get(request.symbol, [])
    stored = load_bars(conn, table, [request.symbol], request.start, request.end).get(request.symbol)
    if is_covered(request, fetched, stored):
        return "stored"
    got = obtain_bars(request, cache=ctx.cache, source=ctx.source(), use_cache=not ctx.refresh)
    store_fetched(conn, table, got)
    return "cache" if got.from_cache else "network"


def spy_series(conn: psycopg.Connection[Any], table: str, start: dt.date, end: dt.date) -> pd.Series:
    """SPY adj_close by trade_date (from the ETF table)."""
    bars = load_bars(conn, table, ["SPY"], start, end).get("SPY")
    if bars is None or bars.empty:
        return pd.Series(dtype=float)
    adj = bars["adj_close"].fillna(bars["close"])
    return pd.Series(adj.to_numpy(dtype=float), index=list(bars["trade_date"]))

