"""An intraday backfill run: plan the sessions against Yahoo's window and what is stored, fetch the
missing ones in the fewest requests, store each request in one transaction, summarize.

Per ticker: the closed sessions of the range inside the interval's window, minus those fetched whole
before (``intraday_sessions_fetched``, at least 30 minutes after their close) → requests of whole
New York days (``intraday_plan.requests_for``) → each answer's bars upserted with the sessions it
covered, so a run stopped at any point keeps every request it finished and a rerun asks only for
the rest. A 429 stops the run with the command that resumes it, as every fetching command does.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tasks.core.calendar import NY_TZ, last_closed_session, sessions_back
from tasks.core.commands import RunEnd, plain
from tasks.core.db import open_database
from tasks.core.display import ProgressSink, Reporter, format_eta, printer
from tasks.core.errors import BadInput, NoData, Outcome, RateLimited, SourceError
from tasks.core.runs import record_item, start_run
from tasks.core.types import StoreCounts
from tasks.prices.backfill import ItemOutcome, Summary
from tasks.prices.backfill_run import concluded, recorded
from tasks.prices.intraday_plan import SETTLED_AFTER, RangePlan, Request, Session, plan_range, requests_for
from tasks.prices.intraday_store import ensure_months, fetched_sessions, restate_for_splits, store_intraday
from tasks.prices.store import store_actions
from tasks.sources.budget import budget_eta_seconds, describe_budget, peek_budget
from tasks.sources.settings import SourceSettings
from tasks.sources.yahoo import YahooSource


@dataclass(frozen=True)
class IntradayOptions:
    tickers: tuple[str, ...]
    interval: str
    start_date: dt.date | None = None  # the range: from this day, or
    days: int | None = None  # the last N sessions up to end_date
    end_date: dt.date | None = None
    prepost: bool = False
    dry_run: bool = False
    run_name: str = "backfill"
    source: SourceSettings = field(default_factory=SourceSettings)


@dataclass(frozen=True)
class TickerPlan:
    ticker: str
    wanted: int
    missing: tuple[dt.date, ...]
    requests: tuple[Request, ...]


def plan_intraday(conn: Any, opts: IntradayOptions, now: dt.datetime) -> tuple[RangePlan, list[TickerPlan]]:
    """The range's sessions inside Yahoo's window, and per ticker what is missing and the requests for it.

    Raises:
        BadInput: the range holds no session.
    """
    closed = last_closed_session(now)
    last = min(opts.end_date or closed, closed)
    if opts.start_date is not None:
        first = opts.start_date
    else:
        assert opts.days is not None
        first = sessions_back(opts.days, last, now=now)[0]
    if first > last:
        raise BadInput(f"no closed NYSE session from {first} to {last}")
    window = plan_range(opts.interval, first, last, now)
    if not window.sessions and not window.outside:
        raise BadInput(f"no closed NYSE session from {first} to {last}")
    days = [s.day for s in window.sessions]
    settled = {s.day: s.close + SETTLED_AFTER for s in window.sessions}
    stored = fetched_sessions(conn, list(opts.tickers), opts.interval, first, last, prepost=opts.prepost, settled=settled) if days \
        else {t: set() for t in opts.tickers}
    plans = []
    for ticker in opts.tickers:
        missing = [d for d in days if d not in stored[ticker]]
        plans.append(TickerPlan(ticker, len(days), tuple(missing), tuple(requests_for(missing, opts.interval))))
    return window, plans


def describe_intraday_plan(window: RangePlan, plans: list[TickerPlan], say: Callable[[str], Any]) -> None:
    sessions = window.sessions
    span = f"{sessions[0].day} .. {sessions[-1].day}" if sessions else "none"
    say(f"Plan for {len(sessions)} NYSE session(s) of {window.interval} bars ({span}) into intraday_bars:")
    groups: dict[tuple[int, int], list[str]] = {}
    for p in plans:
        groups.setdefault((len(p.missing), len(p.requests)), []).append(p.ticker)
    for (missing, requests), tickers in sorted(groups.items(), reverse=True):
        shown = ", ".join(tickers[:12]) + (f" and {len(tickers) - 12} more" if len(tickers) > 12 else "")
        what = "all sessions stored" if not missing else f"{missing} session(s) missing, {requests} request(s)"
        say(f"  {what}: {len(tickers)} ticker(s): {shown}")


def run_intraday(opts: IntradayOptions, *, dsn: str, command: str, wrap: Callable[..., Any] = plain,
                 log: Callable[[str], Any] | None = None, now: dt.datetime | None = None,
                 progress: ProgressSink | None = None) -> RunEnd:
    """The intraday backfill, identical with or without Prefect (``wrap`` turns steps into tasks).

    Returns how it ended; its ``detail`` is the run's ``Summary`` (None for a dry run).

    Raises:
        BadInput: the range holds no session (nothing written).
        StoreError: the database is unreachable or refused a write.
        KeyboardInterrupt: Ctrl+C/SIGTERM (the request in flight is rolled back).
    """
    say = printer(log)
    moment = now or dt.datetime.now(dt.UTC)
    settings = opts.source
    conn = open_database(dsn, dry_run=opts.dry_run)
    try:
        window, plans = wrap(plan_intraday, "plan")(conn, opts, moment)
        note = window.note()
        if note:
            say(note)
        requests = sum(len(p.requests) for p in plans)
        if opts.dry_run:
            budget_state = peek_budget(conn, settings.rate_budget, settings.rate_per_min)
            conn.rollback()
            describe_intraday_plan(window, plans, say)
            say(f"Network: {requests} request(s) for {sum(1 for p in plans if p.requests)} ticker(s); "
                f"skipped: {sum(1 for p in plans if not p.requests)}")
            say(describe_budget(budget_state, requests=requests + (2 if requests else 0), delay=settings.delay))
            return RunEnd(Outcome.DONE)
        params = {"interval": opts.interval, "prepost": opts.prepost, "start_date": str(opts.start_date), "days": opts.days,
                  "end_date": str(opts.end_date), "rate_budget": settings.rate_budget}
        run_id = start_run(conn, opts.run_name, command, params, list(opts.tickers))
        summary = Summary()
        reporter = Reporter(len(plans), log=log, progress=progress)
        budget = settings.budget(dsn)
        sessions = {s.day: s for s in window.sessions}
        pace = peek_budget(conn, settings.rate_budget, settings.rate_per_min)  # the ETA: the budget's rate as it stands

        def eta(left: int) -> str:
            return format_eta(budget_eta_seconds(pace, left, delay=settings.delay)) if left else ""

        counted = f"Bars ({opts.interval})"  # the summary line's name for what it counts
        recorded(conn, run_id, summary, lambda: summary.line(counted),
                 lambda: fetch_all(plans, opts, conn=conn, run_id=run_id, summary=summary, reporter=reporter, wrap=wrap,
                                   source=lambda: settings.source(budget), sessions=sessions, eta=eta),
                 close=(budget.close, reporter.close))
        return concluded(summary, summary.line(counted), settings, command, say)
    finally:
        conn.close()


def fetch_all(plans: list[TickerPlan], opts: IntradayOptions, *, conn: Any, run_id: int, summary: Summary, reporter: Reporter,
              wrap: Callable[..., Any], source: Callable[[], YahooSource], sessions: dict[dt.date, Session],
              eta: Callable[[int], str] = lambda left: "") -> None:
    """Each ticker's requests in turn, the status saying the ETA of the requests left (``eta``); stops at the first 429."""
    made: list[YahooSource] = []
    left = sum(len(p.requests) for p in plans)
    fetch = wrap(fetch_request, "fetch-bars")
    for plan in plans:
        if not plan.requests:
            with conn.transaction():
                record_item(conn, run_id, plan.ticker, "skipped", f"all {plan.wanted} sessions stored")
            summary.add(ItemOutcome(plan.ticker, "skipped"))
            reporter.item(f"{plan.ticker} skipped (all {plan.wanted} sessions stored)")
            continue
        if not made:
            made.append(source())
        counts, rows = StoreCounts(), 0
        error: SourceError | None = None
        for k, request in enumerate(plan.requests, start=1):
            reporter.status(f"{plan.ticker}: request {k}/{len(plan.requests)} ({request.first} .. {request.last})", eta(left),
                            plain=k == 1)  # without a terminal: a line as each ticker starts
            left -= 1
            try:
                got, n = fetch(made[0], conn, plan.ticker, opts, request, sessions)
            except RateLimited as exc:
                summary.rate_limited = exc
                reporter.line(exc.stopping(plan.ticker))
                return
            except SourceError as exc:
                error = exc
                break
            counts, rows = counts + got, rows + n
        if error is not None and not rows:
            status = "no_data" if isinstance(error, NoData) else "failed"
            with conn.transaction():
                record_item(conn, run_id, plan.ticker, status, error.reason)
            outcome = ItemOutcome(plan.ticker, status, error=error)  # type: ignore[arg-type]
        else:
            with conn.transaction():
                record_item(conn, run_id, plan.ticker, "done" if error is None else "failed", None if error is None else error.reason,
                            new=counts.new, updated=counts.updated)
            outcome = ItemOutcome(plan.ticker, "done" if error is None else "failed", counts, rows=rows, error=error)
        summary.add(outcome)
        reporter.item(outcome.describe())


def fetch_request(source: YahooSource, conn: Any, ticker: str, opts: IntradayOptions, request: Request,
                  sessions: dict[dt.date, Session]) -> tuple[StoreCounts, int]:
    """One request: fetch, keep the bars of its sessions, store them with the sessions it covered.

    Raises:
        RateLimited, SourceError: as ``YahooSource.fetch_intraday`` (nothing of the request stored).
    """
    frame, splits = source.fetch_intraday(ticker, opts.interval, request.start, request.end, prepost=opts.prepost)
    bars = bars_of(frame, [sessions[d] for d in request.sessions], prepost=opts.prepost)
    ensure_months(conn, bars["bar_start"].tolist() if not bars.empty else [])
    found = collections.Counter(bars["session"].tolist())
    counts = {d: found[d] for d in request.sessions}
    stored = store_intraday(conn, ticker, opts.interval, bars, counts, prepost=opts.prepost)
    if splits:  # recorded with the daily runs' actions; the bars stored before them are restated
        store_actions(conn, pd.DataFrame({"ticker": ticker, "ex_date": [d for d, _ in splits], "kind": "split",
                                          "value": [r for _, r in splits]}))
    restate_for_splits(conn, ticker)
    return stored, len(bars)


def bars_of(frame: pd.DataFrame, sessions: list[Session], *, prepost: bool) -> pd.DataFrame:
    """The bars of ``sessions`` (their New York day), each with its session, whether it lies in
    regular hours and its start in epoch seconds; pre/post-market bars only with ``prepost``."""
    local = frame["bar_start"].dt.tz_convert(NY_TZ).dt.date
    by_day = {s.day: s for s in sessions}
    keep = local.isin(list(by_day))
    out = frame[keep].copy()
    out["session"] = local[keep].to_numpy()
    opens = out["session"].map(lambda d: by_day[d].open)
    closes = out["session"].map(lambda d: by_day[d].close)
    regular = (out["bar_start"] >= pd.to_datetime(opens, utc=True)) & (out["bar_start"] < pd.to_datetime(closes, utc=True))
    out["regular"] = regular.astype("int64")
    if not prepost:
        out = out[regular]
    out["bar_epoch"] = ((out["bar_start"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype("int64")
    return out.reset_index(drop=True)
