"""The staggered runner's loop: one ticker at a time, waiting between network fetches only.

Cache hits and skips cost no wait. Each ticker commits its rows with its progress record, so
an interrupt (KeyboardInterrupt, raised by Ctrl+C or SIGTERM) loses at most the ticker in
flight, which is rolled back whole. The caller prints the resume hint.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import psycopg

from tasks.core.display import Reporter, format_duration, format_eta
from tasks.core.errors import RateLimited, SourceError
from tasks.prices.backfill import (
    BackfillPlan,
    ItemOutcome,
    PlanItem,
    Summary,
    committed_and_counted,
    fetch_item,
    record_failure,
    record_skip,
    restate_and_store,
)
from tasks.sources.cache import DownloadCache
from tasks.sources.protocol import BarSource
from tasks.sources.spacing import MinIntervalGate
from tasks.sources.yahoo import YahooSource

DEFAULT_FETCH_ESTIMATE_S = 3.0


def stagger_eta_seconds(actions: list[str], *, delay_s: float, fetch_s: float, first_wait: float = 0.0) -> float:
    """Seconds until ``actions`` (plan actions still to do, in order) are done.

    The first network fetch costs ``first_wait`` (what is left of the current wait) plus
    ``fetch_s``; every later one the full ``delay_s`` plus ``fetch_s``. Cache hits and skips
    cost nothing: the wait applies only between network fetches.
    """
    fetches = sum(1 for a in actions if a == "fetch")
    if fetches == 0:
        return 0.0
    return first_wait + fetches * fetch_s + (fetches - 1) * delay_s


@dataclass
class StaggerState:
    """What the loop knows while it runs (read by the caller after an interrupt)."""

    summary: Summary
    fetched: int = 0
    fetch_seconds: float = 0.0

    @property
    def avg_fetch(self) -> float:
        return self.fetch_seconds / self.fetched if self.fetched else DEFAULT_FETCH_ESTIMATE_S


def stagger_fetches(
    conn: psycopg.Connection[Any],
    plan: BackfillPlan,
    state: StaggerState,
    *,
    run_id: int,
    cache: DownloadCache,
    make_source: Callable[[], YahooSource],
    spacing: MinIntervalGate,
    reporter: Reporter,
    refresh: bool = False,
    step: Callable[..., ItemOutcome] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Work through ``plan`` in order, updating ``state``; stops early on a rate limit.

    ``spacing`` holds the delay between network fetches (its interval counts from the end of
    the previous fetch). ``step`` wraps the fetch-and-store of one ticker (a Prefect task in
    the flow); by default it is ``fetch_and_store``.

    Raises:
        KeyboardInterrupt: on Ctrl+C/SIGTERM; the ticker in flight is not committed.
        StoreError: the database failed; the ticker in flight is not committed.
    """
    source: YahooSource | None = None
    run = step or fetch_and_store

    def report(outcome: ItemOutcome) -> None:  # inside the ticker's step, with no stop between its commit and this
        _report(reporter, state, outcome)

    wanted = set(plan.sessions)
    items = list(plan.items)
    for index, item in enumerate(items):
        left = [i.action for i in items[index:]]
        if item.action == "skip":
            _report(reporter, state, record_skip(conn, item, run_id=run_id))
            continue
        if item.action == "cache" and not refresh:
            try:
                result = fetch_item(item, cache=cache, source=None)
            except SourceError:  # expired since planning: fetch it instead
                pass
            else:
                def lazy_source() -> YahooSource:
                    nonlocal source
                    source = source or make_source()
                    return source
                try:
                    restate_and_store(conn, plan.table, result, cache=cache, source=lazy_source, run_id=run_id, sessions=wanted,
                                      counted=report)
                except RateLimited as exc:
                    _stop(state, reporter, item.ticker, exc)
                    return
                continue
        _wait_turn(item.ticker, left, len(items), spacing, state, reporter)
        if source is None:
            source = make_source()
        started = clock()
        try:
            run(conn, plan.table, item, cache=cache, source=source, run_id=run_id, sessions=wanted, use_cache=not refresh,
                counted=report)
        except RateLimited as exc:
            _stop(state, reporter, item.ticker, exc)
            return
        finally:
            spacing.mark()
            state.fetched += 1
            state.fetch_seconds += clock() - started


def _wait_turn(ticker: str, left: Sequence[str], total: int, spacing: MinIntervalGate, state: StaggerState, reporter: Reporter) -> None:
    """Wait out the spacing since the last fetch, showing which ticker is next and when the run should end."""
    wait = spacing.remaining()
    eta = format_eta(stagger_eta_seconds(["fetch", *left[1:]], delay_s=spacing.min_interval, fetch_s=state.avg_fetch, first_wait=wait))
    done = len(state.summary.outcomes)
    if wait > 0:
        reporter.status(f"{ticker}: waiting {format_duration(wait)} ({done} done, {total - done} left)", eta, plain=True)
    spacing.acquire()
    reporter.status(f"{ticker}: fetching ({done} done, {total - done} left)", eta, plain=True)


def _stop(state: StaggerState, reporter: Reporter, ticker: str, exc: RateLimited) -> None:
    state.summary.rate_limited = exc
    reporter.line(exc.stopping(ticker))


def fetch_and_store(
    conn: psycopg.Connection[Any], table: str, item: PlanItem, *, cache: DownloadCache, source: BarSource, run_id: int,
    sessions: set[dt.date], use_cache: bool = True, counted: Callable[[ItemOutcome], None] = lambda _: None,
) -> ItemOutcome:
    """One ticker: cache or network, then its rows and progress record in one transaction, ``counted``
    with no stop between the commit and it.

    Raises:
        RateLimited: the source answered 429 (nothing recorded for the ticker).
        StoreError: the write failed (nothing of the ticker is committed).
    """
    try:
        result = fetch_item(item, cache=cache, source=source, use_cache=use_cache)
    except RateLimited:
        raise
    except SourceError as exc:
        return committed_and_counted(partial(record_failure, conn, item.ticker, exc, run_id=run_id, table=table), counted)
    return restate_and_store(conn, table, result, cache=cache, source=lambda: source, run_id=run_id, sessions=sessions,
                             counted=counted)



def _report(reporter: Reporter, state: StaggerState, outcome: ItemOutcome) -> None:
    state.summary.add(outcome)
    reporter.item(outcome.describe())
