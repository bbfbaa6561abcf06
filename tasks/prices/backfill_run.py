"""A backfill run: plan against the database and the cache, fetch the rest (batched or per ticker),
store each ticker with its progress record, summarize. The ETF backfill is this; the daily
pipeline's two history stages are too."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.calendar import planned_sessions
from tasks.core.commands import RunEnd, ended, plain
from tasks.core.db import database_errors, open_database
from tasks.core.display import ProgressSink, Reporter, format_eta, printer
from tasks.core.errors import Outcome, RateLimited, SourceError
from tasks.core.runs import finish_run, start_run
from tasks.core.tickers import ETF_UNIVERSE
from tasks.core.types import FetchResult
from tasks.prices.backfill import (
    NO_DATA_NOTE,
    BackfillPlan,
    ItemOutcome,
    PlanItem,
    Summary,
    fetch_item,
    plan_backfill,
    record_failure,
    record_skip,
    restate_and_store,
)
from tasks.prices.store import ETF_TABLE
from tasks.sources.budget import RateBudget, describe_budget, peek_budget
from tasks.sources.cache import DownloadCache
from tasks.sources.settings import SourceSettings
from tasks.sources.yahoo import YahooSource


@dataclass(frozen=True)
class BackfillOptions:
    """Everything a backfill run needs besides the database location (never a flow parameter)."""

    tickers: tuple[str, ...] = ETF_UNIVERSE
    days: int | None = 20  # the last N sessions to end_date, or
    start_date: dt.date | None = None  # the sessions from this one (days None)
    end_date: dt.date | None = None
    batch: bool = True
    dry_run: bool = False
    table: str = ETF_TABLE
    run_name: str = "etf-backfill"  # how the run is recorded in backfill_runs
    title: str = "ETF backfill"  # the summary artifact's heading
    source: SourceSettings = field(default_factory=SourceSettings)


BATCH_CHUNK = 20  # tickers a batched download asks for before their bars are stored
_LISTED = 40  # up to this many tickers a line each; beyond, one line per (action, reason, range) with its tickers


def describe_backfill_plan(plan: BackfillPlan, out: Callable[[str], Any]) -> None:
    """The dry-run listing: per ticker its action and why (for a universe of hundreds, the tickers
    sharing an action, reason and range on one line), then the totals."""
    first, last = plan.sessions[0], plan.sessions[-1]
    out(f"Plan for {len(plan.sessions)} NYSE sessions {first} .. {last} into {plan.table}:")
    groups: dict[tuple[str, str, str], list[str]] = {}
    for item in plan.items:
        span = f" [{item.request.start} .. {item.request.end}]" if item.request else ""
        if len(plan.items) <= _LISTED:
            out(f"  {item.ticker:<6} {item.action:<5} {item.reason}{span}")
        groups.setdefault((item.action, item.reason, span), []).append(item.ticker)
    if len(plan.items) > _LISTED:
        for (action, reason, span), tickers in groups.items():
            shown = ", ".join(tickers[:12]) + (f" and {len(tickers) - 12} more" if len(tickers) > 12 else "")
            out(f"  {action:<5} {reason}{span}: {len(tickers)} ticker(s): {shown}")
    out(f"Network: {plan.count('fetch')} ticker(s); cache: {plan.count('cache')}; skipped: {plan.count('skip')}")


def yahoo_requests_needed(plan: BackfillPlan, opts: BackfillOptions) -> int:
    """HTTP requests a run would make: cookie and crumb once, then one per ticker to fetch, batched
    or not (``yf.download`` asks Yahoo's chart endpoint once per symbol: it takes one)."""
    fetch = [i for i in plan.items if i.action == "fetch" and i.request is not None]
    return 2 + len(fetch) if fetch else 0


def run_backfill(
    opts: BackfillOptions,
    *,
    dsn: str,
    command: str,
    wrap: Callable[..., Any] = plain,
    log: Callable[[str], Any] | None = None,
    progress: ProgressSink | None = None,
) -> RunEnd:
    """The backfill itself, identical with or without Prefect (``wrap`` turns steps into tasks).

    Returns how it ended; its ``detail`` is the run's ``Summary`` (None for a dry run).

    Raises:
        BadInput: bad options (nothing written).
        StoreError: the database is unreachable or refused a write.
        KeyboardInterrupt: Ctrl+C/SIGTERM (the ticker in flight is rolled back).
    """
    say = printer(log)

    settings = opts.source
    sessions = planned_sessions(opts.days, opts.end_date, say, start=opts.start_date)
    cache = settings.cache()
    conn = open_database(dsn, dry_run=opts.dry_run)
    try:
        plan: BackfillPlan = wrap(plan_backfill, "plan")(conn, opts.table, list(opts.tickers), sessions,
                                                         cache=None if settings.refresh else cache)
        if opts.dry_run:
            budget_state = peek_budget(conn, settings.rate_budget, settings.rate_per_min)
            conn.rollback()
            describe_backfill_plan(plan, say)
            say(describe_budget(budget_state, requests=yahoo_requests_needed(plan, opts), delay=settings.delay))
            return RunEnd(Outcome.DONE)
        flat = {**{k: v for k, v in asdict(opts).items() if k != "source"}, **asdict(settings)}
        params = {k: (str(v) if isinstance(v, (Path, dt.date)) else v) for k, v in flat.items()}
        run_id = start_run(conn, opts.run_name, command, params, list(opts.tickers))
        summary = Summary()
        reporter = Reporter(len(plan.items), log=log, progress=progress)
        budget = settings.budget(dsn)
        recorded(conn, run_id, summary, summary.line, lambda: execute(plan, opts, conn=conn, cache=cache, run_id=run_id, summary=summary,
                                                                     reporter=reporter, wrap=wrap, budget=budget),
                 close=(budget.close, reporter.close))
        return concluded(summary, summary.line(), settings, command, say)
    finally:
        conn.close()


def recorded(conn: Any, run_id: int, summary: Summary, line: Callable[[], str], work: Callable[[], None], *,
             close: tuple[Callable[[], None], ...]) -> None:
    """Run ``work`` (the run's fetching and storing), then, however it ends, ``close`` its budget and
    progress and record the run's final status and summary ``line`` (interrupted by a stop)."""
    status = "interrupted"
    try:
        with database_errors("the database failed mid-run (what committed is kept)"):
            work()
        status = "rate_limited" if summary.rate_limited else ("failed" if summary.failed else "done")
    except Exception:
        status = "failed"
        raise
    finally:
        for done in close:
            done()
        finish_run(conn, run_id, status, line())


def concluded(summary: Summary, line: str, settings: SourceSettings, command: str, say: Callable[[str], Any]) -> RunEnd:
    """Say the summary (and, after a 429, when and how to resume); how the run ended."""
    say(line)
    if summary.only_no_data and summary.rate_limited is None:
        say(NO_DATA_NOTE)
    return ended(summary, failed=summary.failed, say=say, stopped=summary.rate_limited,
                 sleep_s=settings.rate_limit_sleep, resume=command)


def execute(plan: BackfillPlan, opts: BackfillOptions, *, conn: Any, cache: DownloadCache, run_id: int,
             summary: Summary, reporter: Reporter, wrap: Callable[..., Any], budget: RateBudget | None = None) -> None:
    wanted = set(plan.sessions)

    def counted(outcome: ItemOutcome) -> None:
        summary.add(outcome)
        reporter.item(outcome.describe())

    def store_and_report(result: FetchResult) -> None:
        """Store one ticker and count it at once, in one task, a stop held between the commit and the
        count: a stop finds the item in the run's summary once it is stored (Prefect also reports a
        task's end to its API after the commit)."""
        restate_and_store(conn, plan.table, result, cache=cache, source=source, run_id=run_id, sessions=wanted, counted=counted)

    store = wrap(store_and_report, "store-bars")
    sources: list[YahooSource] = []

    def source() -> YahooSource:  # built on first need: a fully cached run never touches yfinance
        if not sources:
            sources.append(opts.source.source(budget))
        return sources[0]

    def stored_or_stop(item: PlanItem, result: FetchResult) -> bool:
        """Store one ticker (its whole history restated first if a new split/dividend calls for it);
        True when the run must stop (the source rate-limited the restatement)."""
        try:
            store(result)
        except RateLimited as exc:
            return fail_item(exc, item, conn, run_id, summary, reporter, table=opts.table)
        return False

    for item in (i for i in plan.items if i.action == "skip"):
        outcome = record_skip(conn, item, run_id=run_id)
        summary.add(outcome)
        reporter.item(outcome.describe())
    to_fetch: list[PlanItem] = []
    for item in (i for i in plan.items if i.action == "cache"):
        try:
            result = wrap(fetch_item, f"cache-{item.ticker}")(item, cache=cache, source=None)
        except SourceError:  # expired between plan and now: fetch it instead
            to_fetch.append(item)
            continue
        if stored_or_stop(item, result):
            return
    to_fetch += [i for i in plan.items if i.action == "fetch"]
    if not to_fetch:
        return
    if opts.batch and len(to_fetch) > 1:
        batch = wrap(source().fetch_batch, "fetch-batch", retries=0)
        # A chunk at a time (yfinance asks Yahoo once per ticker either way): a stop or a 429 keeps
        # every chunk stored before it, where one download of all kept nothing until its end.
        for first in range(0, len(to_fetch), BATCH_CHUNK):
            chunk = to_fetch[first:first + BATCH_CHUNK]
            reporter.status(f"downloading tickers {first + 1}-{first + len(chunk)} of {len(to_fetch)}",
                            format_eta((len(to_fetch) - first) * opts.source.spacing_s()), plain=True)
            results = batch([i.request for i in chunk])
            failed: list[tuple[PlanItem, SourceError]] = []
            for item in chunk:  # store every answer first: a 429 must not cost what arrived before it
                got = results[item.request]
                if isinstance(got, SourceError):
                    failed.append((item, got))
                    continue
                cache.put(got)
                if stored_or_stop(item, got):
                    return
            for item, error in sorted(failed, key=lambda f: isinstance(f[1], RateLimited)):
                if fail_item(error, item, conn, run_id, summary, reporter, table=opts.table):
                    return
        return
    fetch = wrap(fetch_item, "fetch-bars")
    spacing = opts.source.spacing_s()
    for n, item in enumerate(to_fetch):
        span = f" ({item.request.start} to {item.request.end})" if item.request else ""
        reporter.starting(f"{item.ticker} fetching{span}", format_eta((len(to_fetch) - n) * spacing))
        try:
            result = fetch(item, cache=cache, source=source(), use_cache=not opts.source.refresh)
        except SourceError as exc:
            if fail_item(exc, item, conn, run_id, summary, reporter, table=opts.table):
                return
            continue
        if stored_or_stop(item, result):
            return


def fail_item(error: SourceError, item: PlanItem, conn: Any, run_id: int, summary: Summary, reporter: Reporter, *,
              table: str) -> bool:
    """Record a failed ticker; True when the run must stop (rate limit)."""
    if isinstance(error, RateLimited):
        summary.rate_limited = error
        reporter.line(error.stopping(item.ticker))
        return True
    outcome = record_failure(conn, item.ticker, error, run_id=run_id, table=table)
    summary.add(outcome)
    reporter.item(outcome.describe())
    return False


def summary_markdown(summary: Summary, code: Outcome, command: str, title: str = "ETF backfill") -> str:
    """The run's Prefect artifact: the summary line and a row per ticker."""
    rows = "\n".join(f"| {o.ticker} | {o.status} | {o.rows} | {o.counts.new} | {o.counts.updated} | {o.error.reason if o.error else ''} |"
                     for o in summary.outcomes)
    text = f"## {title}\n\n{summary.line()}\n\n| ticker | status | rows | new | updated | error |\n|---|---|---|---|---|---|\n{rows}\n"
    if code == Outcome.RATE_LIMITED:
        text += f"\nStopped by a rate limit. Resume later with `{command}`.\n"
    return text
