"""Backfill steps shared by every price flow: plan, obtain (cache or network), store, summarize.

``plan_backfill`` checks the database first, then the cache, so a rerun fetches only what is
missing. ``store_result`` writes a ticker's bars, its corporate actions and its progress record
in one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

import psycopg
from psycopg import sql

from tasks.core.calendar import sessions_back, sessions_between
from tasks.core.errors import NoData, RateLimited, SourceError
from tasks.core.processes import stops_held
from tasks.core.runs import record_item
from tasks.core.types import FetchRequest, FetchResult, StoreCounts
from tasks.prices.adjustments import with_restated_history
from tasks.prices.obtain import obtain_bars
from tasks.prices.store import stale_dates, store_actions, store_bars, stored_dates
from tasks.sources.cache import DEFAULT_TTL, DownloadCache
from tasks.sources.protocol import BarSource

Action = Literal["skip", "cache", "fetch"]
# Yahoo revises recent bars: once the cache (24 h) has expired, the last few closed sessions are
# pulled again; a revised value updates its row (and fetched_at), an unchanged one is left alone.
RECHECK_SESSIONS = 5
RECHECK_AFTER_S = DEFAULT_TTL


@dataclass(frozen=True)
class PlanItem:
    """What to do for one ticker and why."""

    ticker: str
    action: Action
    request: FetchRequest | None
    stored: int
    wanted: int
    recheck: int = 0

    @property
    def reason(self) -> str:
        if self.action == "skip":
            return f"all {self.wanted} sessions stored"
        missing = self.wanted - self.stored
        where = "fresh cache" if self.action == "cache" else "network"
        again = f", re-checking {self.recheck} recent session(s) for revisions" if self.recheck else ""
        if missing == 0:
            what = f"all {self.wanted} sessions stored" + (again if self.recheck else ", refreshing")
            return f"{what} from {where}"
        return f"{missing} of {self.wanted} sessions missing{again}, from {where}"


@dataclass(frozen=True)
class BackfillPlan:
    table: str
    sessions: tuple[dt.date, ...]
    items: tuple[PlanItem, ...]

    def count(self, action: Action) -> int:
        return sum(1 for i in self.items if i.action == action)


def plan_backfill(
    conn: psycopg.Connection[Any], table: str, tickers: list[str], sessions: list[dt.date], *, cache: DownloadCache | None,
    only_missing: bool = True,
) -> BackfillPlan:
    """Decide per ticker: skip (all sessions stored), cache (a fresh download covers it) or fetch.

    ``cache=None`` means ``--refresh``: never read the cache. With ``only_missing=False`` no
    ticker is skipped and every request spans all ``sessions`` (a refresh of stored values).

    Raises:
        StoreError: the database could not be read.
    """
    first, last = sessions[0], sessions[-1]
    stored = stored_dates(conn, table, tickers, first, last)
    recent = sorted(set(sessions_back(RECHECK_SESSIONS)) & set(sessions))
    stale = stale_dates(conn, table, tickers, recent, RECHECK_AFTER_S)
    items = []
    for ticker in tickers:
        have = stored[ticker]
        missing = [d for d in sessions if d not in have]
        due = sorted(set(missing) | stale[ticker])
        if only_missing and not due:
            items.append(PlanItem(ticker, "skip", None, len(sessions), len(sessions)))
            continue
        span = due if only_missing else sessions
        request = FetchRequest(ticker, span[0], span[-1])
        action: Action = "cache" if cache is not None and cache.get(request) is not None else "fetch"
        items.append(PlanItem(ticker, action, request, len(sessions) - len(missing), len(sessions), recheck=len(stale[ticker])))
    return BackfillPlan(table, tuple(sessions), tuple(items))


def fetch_item(item: PlanItem, *, cache: DownloadCache, source: BarSource | None, use_cache: bool = True) -> FetchResult:
    """Bars for a planned item: from the cache if fresh, else from the source (then cached).

    Raises:
        RateLimited: the source answered 429.
        SourceError: the source has no usable data for the ticker.
    """
    assert item.request is not None
    return obtain_bars(item.request, cache=cache, source=source, use_cache=use_cache)


@dataclass
class ItemOutcome:
    """One ticker's result, as reported and summed."""

    ticker: str
    status: Literal["done", "failed", "skipped", "no_data"]
    counts: StoreCounts = field(default_factory=StoreCounts)
    rows: int = 0
    from_cache: bool = False
    error: SourceError | None = None
    possibly_delisted: bool = False  # no data now, yet its history is stored

    def describe(self) -> str:
        if self.status == "skipped":
            return f"{self.ticker} skipped (already stored)"
        if self.status == "failed":
            return f"{self.ticker} failed: {self.error.reason if self.error else 'unknown error'}"
        if self.status == "no_data":
            return f"{self.ticker}: {self.error.reason if self.error else 'no data'}"
        how = "from cache" if self.from_cache else "fetched"
        return f"{self.ticker} {how} ({self.rows} rows: {self.counts.new} new, {self.counts.updated} updated)"


def store_result(
    conn: psycopg.Connection[Any], table: str, result: FetchResult, *, run_id: int | None, sessions: set[dt.date] | None = None
) -> ItemOutcome:
    """Write one ticker's bars, actions and progress record in one transaction.

    Bars are kept on NYSE sessions only (the source may return others): ``sessions`` and those
    of the result's range (wider than ``sessions`` when the history was restated).

    Raises:
        StoreError: nothing of this ticker was written.
    """
    bars = result.bars
    if sessions is not None:
        allowed = set(sessions) | set(sessions_between(result.request.start, result.request.end))
        bars = bars[bars["trade_date"].isin(allowed)]
    ticker = result.request.symbol
    with conn.transaction():
        counts = store_bars(conn, table, bars)
        store_actions(conn, result.actions)
        if run_id is not None:
            record_item(conn, run_id, ticker, "done", None, new=counts.new, updated=counts.updated)
    return ItemOutcome(ticker, "done", counts, rows=len(bars), from_cache=result.from_cache)


def restate_and_store(conn: psycopg.Connection[Any], table: str, result: FetchResult, *, cache: DownloadCache,
                      source: Callable[[], BarSource], run_id: int, sessions: set[dt.date],
                      counted: Callable[[ItemOutcome], None] = lambda _: None) -> ItemOutcome:
    """Store one ticker's bars, its whole history restated first when a new split/dividend calls for it;
    ``counted`` (the run's summary and line) gets the outcome with no stop between its commit and it.

    Raises:
        RateLimited: the restating fetch hit a 429 (nothing of the ticker stored).
    """
    try:
        result = with_restated_history(conn, table, result, cache=cache, source=source)
    except RateLimited:
        raise
    except SourceError as exc:
        return committed_and_counted(partial(record_failure, conn, result.request.symbol, exc, run_id=run_id, table=table), counted)
    return committed_and_counted(lambda: store_result(conn, table, result, run_id=run_id, sessions=sessions), counted)


def committed_and_counted(write: Callable[[], ItemOutcome], counted: Callable[[ItemOutcome], None]) -> ItemOutcome:
    """``write`` one ticker's outcome (its commit), then ``counted`` it, with a stop held between the
    two: a stop that comes after the commit finds the ticker in the run's summary and lines."""
    with stops_held():
        outcome = write()
        counted(outcome)
    return outcome


def record_failure(conn: psycopg.Connection[Any], ticker: str, error: SourceError, *, run_id: int | None,
                   table: str | None = None) -> ItemOutcome:
    """Record a failed ticker (a rate limit leaves it pending: it was not tried to the end), or one
    the source has no data for: "no data", flagged "possibly delisted" when ``table`` holds its history."""
    if isinstance(error, NoData):
        delisted = table is not None and has_history(conn, table, ticker)
        if delisted:
            error = NoData(ticker, f"{error.reason}; possibly delisted (its history is stored)")
        if run_id is not None:
            with conn.transaction():
                record_item(conn, run_id, ticker, "no_data", error.reason)
        return ItemOutcome(ticker, "no_data", error=error, possibly_delisted=delisted)
    if run_id is not None and not isinstance(error, RateLimited):
        with conn.transaction():
            record_item(conn, run_id, ticker, "failed", error.reason)
    return ItemOutcome(ticker, "failed", error=error)


def has_history(conn: psycopg.Connection[Any], table: str, ticker: str) -> bool:
    """Whether ``table`` holds any bar of ``ticker``."""
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE ticker = %s)").format(sql.Identifier(table))
    row = conn.execute(query, (ticker,)).fetchone()
    return bool(row and row[0])


def record_skip(conn: psycopg.Connection[Any], item: PlanItem, *, run_id: int | None) -> ItemOutcome:
    if run_id is not None:
        with conn.transaction():
            record_item(conn, run_id, item.ticker, "skipped", item.reason)
    return ItemOutcome(item.ticker, "skipped", StoreCounts(unchanged=item.stored), rows=0)


NO_DATA_NOTE = "The source has no data for any requested ticker: check --tickers."


@dataclass
class Summary:
    """Totals of a run, and the one line printed at its end."""

    outcomes: list[ItemOutcome] = field(default_factory=list)
    rate_limited: RateLimited | None = None

    def add(self, outcome: ItemOutcome) -> None:
        self.outcomes.append(outcome)

    @property
    def counts(self) -> StoreCounts:
        total = StoreCounts()
        for o in self.outcomes:
            total = total + o.counts
        return total

    @property
    def failures(self) -> list[ItemOutcome]:
        return [o for o in self.outcomes if o.status == "failed" and not isinstance(o.error, RateLimited)]

    @property
    def no_data(self) -> list[ItemOutcome]:
        return [o for o in self.outcomes if o.status == "no_data"]

    @property
    def only_no_data(self) -> bool:
        """Every ticker the run tried has no data: a mistyped ``--tickers`` stays loud (exit 1)."""
        return bool(self.outcomes) and all(o.status == "no_data" for o in self.outcomes)

    @property
    def failed(self) -> bool:
        """The run failed (exit 1, its record 'failed'): a ticker failed, or none had data."""
        return bool(self.failures) or self.only_no_data

    def done_tickers(self) -> set[str]:
        return {o.ticker for o in self.outcomes if o.status in ("done", "skipped", "no_data")}

    def line(self, what: str = "Prices") -> str:
        """``Prices: 240 new, 0 updated, 0 skipped, 1 error (...)``; ``what`` names the rows counted."""
        c = self.counts
        fails = self.failures
        errors = f"{len(fails)} error" + ("" if len(fails) == 1 else "s")
        if fails:
            shown = ", ".join(f"{o.ticker}: {o.error.reason if o.error else '?'}" for o in fails[:10])
            more = f", +{len(fails) - 10} more" if len(fails) > 10 else ""
            errors += f" ({shown}{more})"
        empty = self.no_data
        if empty:
            shown = ", ".join(o.ticker + (" possibly delisted" if o.possibly_delisted else "")
                              for o in empty[:10])
            errors += f", {len(empty)} no data ({shown}{f', +{len(empty) - 10} more' if len(empty) > 10 else ''})"
        return f"{what}: {c.new} new, {c.updated} updated, {c.unchanged} skipped, {errors}"
