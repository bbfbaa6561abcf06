"""An event valuation run: import (optional), plan, value every ticker group in worker processes,
then the FMP multiples; the summary and the command that continues a stopped run."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

from tasks.core.calendar import last_closed_session, next_close, nyse
from tasks.core.commands import ResumePoint, RunEnd, ended, resume_point
from tasks.core.db import connect, database_errors, open_database
from tasks.core.display import ProgressSink, Reporter, format_eta, printer
from tasks.core.errors import Outcome, RateLimited, SourceError
from tasks.core.processes import platform_start_method
from tasks.core.runs import recorded_run
from tasks.core.tickers import BENCHMARK, Shard
from tasks.events.fundamentals_run import FundamentalsOptions, api_key, run_fundamentals
from tasks.events.groups import GroupResult, ValuationContext, default_group_size, ensure_bars, make_groups, spy_series
from tasks.events.imports import (
    ImportResult,
    TickerWork,
    check_csv,
    describe_bad,
    import_csv,
    pending_by_ticker,
    shard_tickers,
    waiting_for_their_session,
)
from tasks.events.workers import GroupOutcome, process_mapper, worker_processes
from tasks.prices.obtain import covered_tickers, price_request, stored_counts
from tasks.prices.store import ETF_TABLE, STOCK_TABLE
from tasks.sources.budget import describe_budget, peek_budget
from tasks.sources.cache import DownloadCache
from tasks.sources.settings import SourceSettings

# Downloads cost CPU (yfinance parsing) under the GIL: with this many to do, spread them over processes.
# Below it, spawning processes (2-3 s each to import) costs more than it saves.
PROCESS_THRESHOLD = 200


@dataclass(frozen=True)
class ValuationOptions:
    import_csv: Path | None = None
    skip_bad_rows: bool = False
    import_only: bool = False
    overwrite: bool = False
    tickers: tuple[str, ...] | None = None
    shard: Shard | None = None  # only this share of the tickers (one run of a fan-out, or a machine's own share)
    dry_run: bool = False
    concurrency: int = 10
    processes: int | None = None
    start_method: str = field(default_factory=platform_start_method)  # how worker processes start (spawn: as on Windows)
    group_size: int | None = None
    as_of: dt.date | None = None
    source: SourceSettings = field(default_factory=lambda: SourceSettings(delay=0.1))
    fundamentals: FundamentalsOptions = field(default_factory=FundamentalsOptions)


@dataclass
class RunTotals:
    """Sums over the groups, and the lines printed at the end."""

    events: int
    tickers: int
    groups: int
    results: list[GroupResult] = field(default_factory=list)
    failed_groups: dict[int, str] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def add(self, result: GroupResult) -> None:
        self.results.append(result)

    @property
    def rate_limited(self) -> RateLimited | None:
        return next((r.rate_limited for r in self.results if r.rate_limited), None)

    def total(self, name: str) -> int:
        return sum(int(getattr(r, name)) for r in self.results)

    def progress(self) -> tuple[str, str]:
        done = self.total("events")
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = done / elapsed
        eta = format_eta((self.events - done) / rate) if rate > 0 and done < self.events else ""
        return (f"{done:,}/{self.events:,} events, {self.total('tickers'):,}/{self.tickers:,} tickers, {rate:,.0f} events/s", eta)

    def line(self) -> str:
        failed = {t: e for r in self.results for t, e in r.failed.items()}
        text = (f"Events: {self.total('events'):,} valued ({self.total('ok'):,} ok, {self.total('no_data'):,} no_data, "
                f"{self.total('error'):,} error) in {len(self.results)}/{self.groups} groups; "
                f"{self.total('fetched'):,} tickers fetched, {self.total('from_cache'):,} from cache; "
                f"{time.perf_counter() - self.started:.1f} s")
        if failed:
            shown = ", ".join(f"{t} ({e})" for t, e in list(failed.items())[:10])
            text += f"\nTickers not valued: {shown}" + (f", +{len(failed) - 10} more" if len(failed) > 10 else "")
        for index, error in self.failed_groups.items():
            text += f"\nGroup {index} failed and wrote nothing: {error}"
        return text


def as_of_session(as_of: dt.date | None) -> dt.date:
    """The last session whose bars a run may use: ``--end`` (or before it), else the last closed one."""
    last = last_closed_session()
    if as_of is None or as_of >= last:
        return last
    return nyse().date_to_session(pd.Timestamp(as_of), direction="previous").date()


def plan_fetches(conn: Any, work: list[TickerWork], table: str, cache: DownloadCache, last: dt.date) -> tuple[int, int]:
    """(network fetches, cache reads) a run would make: tickers whose range is neither fetched before nor fully stored."""
    requests = [r for r in (price_request(w.ticker, w.first, w.last, last) for w in work) if r is not None]
    if not requests:
        return 0, 0
    complete = covered_tickers(conn, table, requests, stored_counts(conn, table, requests))
    network = cached = 0
    for r in requests:
        if r.symbol in complete:
            continue
        if cache.get(r) is not None:
            cached += 1
        else:
            network += 1
    return network, cached


def run_valuation(opts: ValuationOptions, *, dsn: str, command: str, log: Callable[[str], Any] | None = None,
                  mapper: Callable[..., Iterator[GroupOutcome]] | None = None, progress: ProgressSink | None = None) -> RunEnd:
    """Price metrics for every pending event, then (with an FMP key) their valuation multiples."""
    say = printer(log)

    api_key(opts.fundamentals)  # a missing key is a usage error before anything runs
    checked = check_csv(opts.import_csv, skip_bad_rows=opts.skip_bad_rows) if opts.import_csv is not None else None
    with recorded_run(dsn, "event-valuation", command, {}, dry_run=opts.dry_run) as run:  # what it writes carries run.run_id
        end = _value(opts, checked, dsn=run.dsn, command=command, say=say, log=log, mapper=mapper, progress=progress)
        run.ended(end.code)
        return end


def _value(opts: ValuationOptions, checked: Any, *, dsn: str, command: str, say: Callable[[str], None],
           log: Callable[[str], Any] | None, mapper: Callable[..., Iterator[GroupOutcome]] | None,
           progress: ProgressSink | None) -> RunEnd:
    """Price metrics (``value_prices``), then the multiples of the events they valued."""
    prices = value_prices(opts, checked, dsn=dsn, command=command, log=log, mapper=mapper, progress=progress)
    if prices.code in (Outcome.RATE_LIMITED, Outcome.BAD_INPUT) or opts.import_only:
        return prices
    tickers = list(opts.tickers) if opts.tickers else None
    if opts.shard is not None:
        with connect(dsn, autocommit=True) as conn, database_errors("reading the shard's tickers failed"):
            tickers = shard_tickers(conn, opts.shard, tickers)
        if not tickers:
            return prices
    multiples = run_fundamentals(opts.fundamentals, dsn=dsn, source=opts.source, overwrite=opts.overwrite,
                                 tickers=tickers, dry_run=opts.dry_run, command=command, say=say)
    return RunEnd(max(prices.code, multiples.code), multiples.resume)


def value_prices(opts: ValuationOptions, checked: Any, *, dsn: str, command: str, log: Callable[[str], Any] | None = None,
                 mapper: Callable[..., Iterator[GroupOutcome]] | None = None, progress: ProgressSink | None = None) -> RunEnd:
    """Import ``checked`` (``check_csv``'s rows of ``opts.import_csv``, if any), plan, then value
    every group; returns how it ended.

    ``mapper(groups, ctx, concurrency)`` yields each group's result (or its exception) as it
    completes: a bounded thread pool by default, Prefect tasks in the flow.

    Raises:
        BadInput: bad file or flags (nothing written).
        StoreError: the database is unreachable.
    """
    say = printer(log)

    conn = open_database(dsn, dry_run=opts.dry_run)
    code = Outcome.DONE
    try:
        if opts.import_csv is not None:  # in a dry run this happens inside the transaction that is rolled back
            code = _import_events(conn, opts, checked, say)
        if opts.import_only:
            if opts.dry_run:
                conn.rollback()
            return RunEnd(code)
        last_closed = as_of_session(opts.as_of)
        work = _pending_work(conn, opts, last_closed, say)
        if not work:
            return RunEnd(code)
        events = sum(w.events for w in work)
        group_size = opts.group_size or default_group_size(len(work))
        groups = make_groups([(w.ticker, w.events) for w in work], group_size)
        settings = opts.source
        cache = settings.cache()
        cheap_start = opts.start_method == "fork"
        # The fetch count only decides whether processes pay off where they are slow to start.
        network, cached = plan_fetches(conn, work, STOCK_TABLE, cache, last_closed) if opts.dry_run or not cheap_start else (0, 0)
        if opts.dry_run:
            budget_state = peek_budget(conn, settings.rate_budget, settings.rate_per_min)
            conn.rollback()
            per = f"{group_size} ticker{'s' if group_size != 1 else ''}"
            say(f"Would value {events:,} events of {len(work):,} tickers in {len(groups)} group(s) of up to {per} "
                f"({opts.concurrency} at a time); network fetches: {network:,} (+ SPY if not stored), from cache: {cached:,}")
            say(describe_budget(budget_state, requests=network + 2 if network else 0))
            return RunEnd(code)
        ctx = ValuationContext(
            dsn=dsn, table=STOCK_TABLE, cache=cache, spy=pd.Series(dtype=float), last_closed=last_closed, overwrite=opts.overwrite,
            refresh=settings.refresh, source_settings=settings, budget=settings.budget(dsn),
        )
        totals = RunTotals(events=events, tickers=len(work), groups=len(groups))
        stopped = _store_benchmark(conn, work, ctx, command, settings.rate_limit_sleep, say)
        if stopped is not None:
            return RunEnd(Outcome.RATE_LIMITED, stopped)
        conn.close()
        processes = worker_processes(opts.processes or ((os.cpu_count() or 1) if cheap_start or network >= PROCESS_THRESHOLD else 1),
                                     opts.concurrency, len(groups))
        how = f" in {processes} worker processes ({opts.start_method})" if mapper is None and processes > 1 else ""
        say(f"Valuing {events:,} events of {len(work):,} tickers in {len(groups)} groups, {opts.concurrency} at a time{how}")
        run = mapper or partial(process_mapper, processes=processes, start_method=opts.start_method)
        _value_groups(run, groups, ctx, opts.concurrency, totals, log, progress)
        say(totals.line())
        failed = bool(totals.failed_groups or totals.total("error")) or code == Outcome.SOME_FAILED  # or the import's rows
        return ended(totals, failed=failed, say=say, stopped=totals.rate_limited, sleep_s=settings.rate_limit_sleep, resume=command,
                     kept="\n(valued events are kept; a rerun values only the rest)")
    finally:
        if not conn.closed:
            if opts.dry_run:
                conn.rollback()
            conn.close()


def _pending_work(conn: psycopg.Connection[Any], opts: ValuationOptions, last_closed: dt.date, say: Callable[[str], None]) -> list[Any]:
    """The tickers (of the shard, or asked for) with events to value before the cut-off, each with its
    events' range; says what waits for a later session, or that there is nothing to value."""
    tickers = shard_tickers(conn, opts.shard, list(opts.tickers) if opts.tickers else None)
    if tickers is not None and not tickers:
        say(f"Nothing to value: no ticker with events falls in shard {opts.shard}.")
        return []
    if opts.shard is not None:
        say(f"Shard {opts.shard}: {len(tickers or []):,} of the tickers with events")
    cutoff = next_close(last_closed)  # events from here on have their base bar in a later session
    work = pending_by_ticker(conn, overwrite=opts.overwrite, tickers=tickers, before=cutoff)
    later = waiting_for_their_session(conn, cutoff, tickers)
    if later:
        say(f"{later:,} event(s) at or after {cutoff:%Y-%m-%d %H:%M} UTC wait: their base session comes "
            f"after {last_closed}, the last one this run may use")
    if not work:
        say("Nothing to value: every event is valued (use --overwrite to revalue).")
    return list(work)


def _store_benchmark(conn: psycopg.Connection[Any], work: list[Any], ctx: ValuationContext, command: str, sleep_s: float,
                     say: Callable[[str], None]) -> ResumePoint | None:
    """SPY's bars over every event's window, stored and loaded into ``ctx.spy``; where the run
    resumes when Yahoo rate-limited the fetch (the hint said). Unavailable: the excess returns stay empty."""
    spy_request = price_request(BENCHMARK, min(w.first for w in work), max(w.last for w in work), ctx.last_closed)
    if spy_request is None:
        return None
    try:
        how = ensure_bars(conn, ETF_TABLE, spy_request, ctx)
        say(f"Benchmark SPY {spy_request.start} .. {spy_request.end}: {how}")
    except RateLimited as exc:
        point = resume_point(exc, sleep_s, command)
        say(point.hint())
        return point
    except SourceError as exc:
        say(f"Benchmark SPY unavailable ({exc.reason}): excess returns will be empty")
    ctx.spy = spy_series(conn, ETF_TABLE, spy_request.start, spy_request.end)
    return None


def _import_events(conn: psycopg.Connection[Any], opts: ValuationOptions, checked: Any, say: Callable[[str], None]) -> Outcome:
    """``--import-csv``: the file's events into ``events`` (what a dry run would import); SOME_FAILED when rows were skipped."""
    assert opts.import_csv is not None
    imported: ImportResult = import_csv(conn, opts.import_csv, skip_bad_rows=opts.skip_bad_rows, checked=checked)
    would = "Would import" if opts.dry_run else "Imported"
    say(f"{would} {imported.inserted:,} new event(s) from {opts.import_csv} ({imported.duplicates:,} already present)")
    if imported.bad:
        say(f"Skipped {describe_bad(imported.bad)}")
        return Outcome.SOME_FAILED
    return Outcome.DONE


def _value_groups(run: Callable[..., Iterator[GroupOutcome]], groups: list[Any], ctx: ValuationContext, concurrency: int,
                  totals: RunTotals, log: Callable[[str], Any] | None, progress: ProgressSink | None = None) -> None:
    """Value every group through ``run`` (the mapper), adding each result to ``totals`` and showing progress."""
    reporter = Reporter(len(groups), log=log, progress=progress)
    try:
        for outcome in run(groups, ctx, concurrency):
            if isinstance(outcome, tuple):
                index, error = outcome
                totals.failed_groups[index] = error
                reporter.item(f"group {index} failed: {error}")
                continue
            totals.add(outcome)
            text, eta = totals.progress()
            reporter.status(text, eta)
            reporter.item(f"group {outcome.index}: {outcome.events:,} events ({text})")
    finally:
        reporter.close()
