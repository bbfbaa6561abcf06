"""ETF benchmark backfill: SPY and the 11 sector SPDRs, daily OHLCV → ``collected_daily_etf_ohlc``.

    python -m flows.etf_backfill --days 20          (console script: etf-backfill)

Plan (database, then 24 h cache) → fetch only the rest (rate-limited, retried) → store each
ticker in one transaction with its progress record → one summary line and an exit code:
0 all done, 1 some tickers failed, 2 bad input, 75 rate limited (resume later), 130 interrupted.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flows.runtime import (
    ArgumentParser,
    add_common_flags,
    add_fetch_flags,
    command_line,
    plain,
    positive_float,
    program_name,
    resume_hint,
    run_cli,
    use_prefect,
)
from tasks.core.calendar import sessions_back
from tasks.core.db import default_pgdata, open_database, resolve_dsn
from tasks.core.display import Reporter
from tasks.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RATE_LIMITED, EXIT_SOME_FAILED, RateLimited, SourceError
from tasks.core.runs import finish_run, start_run
from tasks.core.tickers import ETF_UNIVERSE, parse_ticker_list
from tasks.core.types import FetchResult
from tasks.prices.backfill import (
    BackfillPlan,
    PlanItem,
    Summary,
    keep_result,
    obtain,
    plan_backfill,
    record_failure,
    record_skip,
)
from tasks.prices.store import ETF_TABLE
from tasks.sources.budget import DEFAULT_NAME, DEFAULT_RATE, RateBudget, describe_budget, parse_rate, peek_budget
from tasks.sources.cache import DownloadCache
from tasks.sources.spacing import RateLimiter
from tasks.sources.yahoo import YahooSource

FLOW_NAME = "etf-backfill"


@dataclass(frozen=True)
class BackfillOptions:
    """Everything a run needs besides the database location (never a flow parameter)."""

    tickers: tuple[str, ...] = ETF_UNIVERSE
    days: int = 20
    end_date: dt.date | None = None
    delay: float = 5.0
    rate_limit_sleep: float = 900.0
    batch: bool = True
    max_retries: int = 3
    timeout: float = 10.0
    retry_wait: float = 1.0
    cache_dir: Path = Path(".cache")
    refresh: bool = False
    dry_run: bool = False
    table: str = ETF_TABLE
    rate_per_min: float = parse_rate(DEFAULT_RATE)
    rate_budget: str = DEFAULT_NAME
    run_name: str = FLOW_NAME  # how the run is recorded in backfill_runs


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="etf-backfill", description="Backfill daily OHLCV of SPY and the 11 sector SPDR ETFs into PostgreSQL.")
    add_fetch_flags(p)
    p.add_argument("--tickers", default=",".join(ETF_UNIVERSE), help='comma-separated subset, e.g. "XLK,XLV" (default: all 12)')
    p.add_argument("--delay", type=positive_float, default=5.0, help="seconds between network requests (default: %(default)s)")
    p.add_argument("--no-batch", action="store_true", help="one request per ticker instead of a batched download")
    p.add_argument("--dry-run", action="store_true", help="print what would be fetched, read from cache and skipped; touch nothing")
    add_common_flags(p)
    return p


def options_from_args(ns: Any) -> BackfillOptions:
    return BackfillOptions(
        tickers=tuple(parse_ticker_list(ns.tickers)), days=ns.days, end_date=ns.end_date, delay=ns.delay,
        rate_limit_sleep=ns.rate_limit_sleep, batch=not ns.no_batch, max_retries=ns.max_retries, timeout=ns.timeout, retry_wait=ns.retry_wait,
        cache_dir=ns.cache_dir, refresh=ns.refresh, dry_run=ns.dry_run, rate_per_min=ns.rate, rate_budget=ns.rate_budget,
    )


def describe_plan(plan: BackfillPlan, out: Callable[[str], Any]) -> None:
    """The dry-run listing: per ticker its action and why, then the totals."""
    first, last = plan.sessions[0], plan.sessions[-1]
    out(f"Plan for {len(plan.sessions)} NYSE sessions {first} .. {last} into {plan.table}:")
    for item in plan.items:
        span = f" [{item.request.start} .. {item.request.end}]" if item.request else ""
        out(f"  {item.ticker:<6} {item.action:<5} {item.reason}{span}")
    out(f"Network: {plan.count('fetch')} ticker(s); cache: {plan.count('cache')}; skipped: {plan.count('skip')}")


def _requests_needed(plan: BackfillPlan, opts: BackfillOptions) -> int:
    """HTTP requests a run would make: cookie and crumb once, then one per distinct range (batched) or ticker."""
    fetch = [i.request for i in plan.items if i.action == "fetch" and i.request is not None]
    if not fetch:
        return 0
    per = len({(r.start, r.end) for r in fetch}) if opts.batch and len(fetch) > 1 else len(fetch)
    return 2 + per


def run_backfill(
    opts: BackfillOptions,
    *,
    command: str,
    wrap: Callable[..., Any] = plain,
    log: Callable[[str], Any] | None = None,
    database_url: str | None = None,
    pgdata: Path | None = None,
) -> tuple[int, Summary | None]:
    """The backfill itself, identical with or without Prefect (``wrap`` turns steps into tasks).

    Returns the exit code and the summary (None for a dry run).

    Raises:
        BadInput: bad options (nothing written).
        StoreError: the database is unreachable or refused a write.
        KeyboardInterrupt: Ctrl+C/SIGTERM (the ticker in flight is rolled back).
    """
    def say(text: str) -> None:  # results always reach stdout; the Prefect log gets them too
        print(text, flush=True)
        if log is not None:
            log(text)

    sessions = sessions_back(opts.days, opts.end_date)
    cache = DownloadCache(opts.cache_dir)
    dsn = resolve_dsn(database_url if database_url is not None else os.environ.get("DATABASE_URL"), pgdata or default_pgdata())
    conn = open_database(dsn, pgdata or default_pgdata(), dry_run=opts.dry_run)
    try:
        plan: BackfillPlan = wrap(plan_backfill, "plan")(conn, opts.table, list(opts.tickers), sessions, cache=None if opts.refresh else cache)
        if opts.dry_run:
            budget_state = peek_budget(conn, opts.rate_budget, opts.rate_per_min)
            conn.rollback()
            describe_plan(plan, say)
            say(describe_budget(budget_state, requests=_requests_needed(plan, opts), delay=opts.delay))
            return EXIT_OK, None
        params = {k: (str(v) if isinstance(v, (Path, dt.date)) else v) for k, v in asdict(opts).items()}
        run_id = start_run(conn, opts.run_name, command, params, list(opts.tickers))
        summary = Summary()
        reporter = Reporter(len(plan.items), log=log)
        status = "interrupted"
        budget = RateBudget(dsn, opts.rate_budget, per_min=opts.rate_per_min, cooldown_s=opts.rate_limit_sleep)
        try:
            _execute(plan, opts, conn=conn, cache=cache, run_id=run_id, summary=summary, reporter=reporter, wrap=wrap, budget=budget)
            status = "rate_limited" if summary.rate_limited else ("failed" if summary.failures else "done")
        finally:
            budget.close()
            reporter.close()
            finish_run(conn, run_id, status, summary.line())
        say(summary.line())
        if summary.rate_limited is not None:
            say(resume_hint(summary.rate_limited, opts.rate_limit_sleep, command))
            return EXIT_RATE_LIMITED, summary
        return (EXIT_SOME_FAILED if summary.failures else EXIT_OK), summary
    finally:
        conn.close()


def _execute(plan: BackfillPlan, opts: BackfillOptions, *, conn: Any, cache: DownloadCache, run_id: int,
             summary: Summary, reporter: Reporter, wrap: Callable[..., Any], budget: RateBudget | None = None) -> None:
    wanted = set(plan.sessions)
    store = wrap(keep_result, "store-bars")
    sources: list[YahooSource] = []

    def source() -> YahooSource:  # built on first need: a fully cached run never touches yfinance
        if not sources:
            sources.append(YahooSource(opts.cache_dir, limiter=RateLimiter(opts.delay), budget=budget, max_retries=opts.max_retries,
                                       timeout=opts.timeout, backoff_initial=opts.retry_wait))
        return sources[0]

    def keep(item: PlanItem, result: FetchResult) -> bool:
        """Store one ticker (its whole history restated first if a new split/dividend calls for it); True to stop."""
        try:
            outcome = store(conn, plan.table, result, cache=cache, source=source, run_id=run_id, sessions=wanted)
        except RateLimited as exc:
            return _fail(exc, item, conn, run_id, summary, reporter)
        summary.add(outcome)
        reporter.item(outcome.describe())
        return False

    for item in (i for i in plan.items if i.action == "skip"):
        outcome = record_skip(conn, item, run_id=run_id)
        summary.add(outcome)
        reporter.item(outcome.describe())
    to_fetch: list[PlanItem] = []
    for item in (i for i in plan.items if i.action == "cache"):
        try:
            result = wrap(obtain, f"cache-{item.ticker}")(item, cache=cache, source=None)
        except SourceError:  # expired between plan and now: fetch it instead
            to_fetch.append(item)
            continue
        if keep(item, result):
            return
    to_fetch += [i for i in plan.items if i.action == "fetch"]
    if not to_fetch:
        return
    if opts.batch and len(to_fetch) > 1:
        reporter.status(f"downloading {len(to_fetch)} tickers")
        results = wrap(source().fetch_batch, "fetch-batch", retries=0)([i.request for i in to_fetch])
        failed: list[tuple[PlanItem, SourceError]] = []
        for item in to_fetch:  # store every answer first: a 429 must not cost what arrived before it
            got = results[item.request]
            if isinstance(got, SourceError):
                failed.append((item, got))
                continue
            cache.put(got)
            if keep(item, got):
                return
        for item, error in sorted(failed, key=lambda f: isinstance(f[1], RateLimited)):
            if _fail(error, item, conn, run_id, summary, reporter):
                return
        return
    fetch = wrap(obtain, "fetch-bars")
    for item in to_fetch:
        reporter.status(f"fetching {item.ticker}")
        try:
            result = fetch(item, cache=cache, source=source(), use_cache=not opts.refresh)
        except SourceError as exc:
            if _fail(exc, item, conn, run_id, summary, reporter):
                return
            continue
        if keep(item, result):
            return


def _fail(error: SourceError, item: PlanItem, conn: Any, run_id: int, summary: Summary, reporter: Reporter) -> bool:
    """Record a failed ticker; True when the run must stop (rate limit)."""
    if isinstance(error, RateLimited):
        summary.rate_limited = error
        reporter.line(f"{item.ticker}: rate limited by the source; stopping now")
        return True
    outcome = record_failure(conn, item.ticker, error, run_id=run_id)
    summary.add(outcome)
    reporter.item(outcome.describe())
    return False


def build_flow() -> Any:
    """The Prefect flow (built on demand so plain runs never import Prefect)."""
    from prefect import flow, get_run_logger
    from prefect.artifacts import create_markdown_artifact

    from flows.prefect_glue import final_state, prefect_progress, prefect_task

    @flow(name=FLOW_NAME, log_prints=False, validate_parameters=False)
    def etf_backfill(
        tickers: list[str] | None = None, days: int = 20, end_date: str | None = None, delay: float = 5.0,
        rate_limit_sleep: float = 900.0, batch: bool = True, max_retries: int = 3, timeout: float = 10.0,
        retry_wait: float = 1.0, cache_dir: str = ".cache", refresh: bool = False, dry_run: bool = False, command: str = "etf-backfill",
        rate: str = DEFAULT_RATE, rate_budget: str = DEFAULT_NAME,
    ) -> Any:
        logger = get_run_logger()
        opts = BackfillOptions(
            tickers=tuple(parse_ticker_list(tickers or list(ETF_UNIVERSE))), days=days, end_date=dt.date.fromisoformat(end_date) if end_date else None,
            delay=delay, rate_limit_sleep=rate_limit_sleep, batch=batch, max_retries=max_retries, timeout=timeout,
            retry_wait=retry_wait, cache_dir=Path(cache_dir), refresh=refresh, dry_run=dry_run, rate_per_min=parse_rate(rate),
            rate_budget=rate_budget,
        )
        lines: list[str] = []

        def log(text: str) -> None:
            lines.append(text)
            logger.info(text)

        code = EXIT_INTERRUPTED
        summary = None
        try:
            with prefect_progress(f"{FLOW_NAME}-progress", "tickers done, %"):
                code, summary = run_backfill(opts, command=command, wrap=prefect_task, log=log)
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        if summary is not None:
            create_markdown_artifact(key="etf-backfill-summary", markdown=_markdown(summary, code, command), description="ETF backfill summary")
        return final_state(code, lines)

    return etf_backfill


def _markdown(summary: Summary, code: int, command: str) -> str:
    rows = "\n".join(f"| {o.ticker} | {o.status} | {o.rows} | {o.counts.new} | {o.counts.updated} | {o.error.reason if o.error else ''} |" for o in summary.outcomes)
    text = f"## ETF backfill\n\n{summary.line()}\n\n| ticker | status | rows | new | updated | error |\n|---|---|---|---|---|---|\n{rows}\n"
    if code == EXIT_RATE_LIMITED:
        text += f"\nStopped by a rate limit. Resume later with `{command}`.\n"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = command_line(program_name("flows.etf_backfill", "etf-backfill"), args)

    def body() -> int:
        ns = build_parser().parse_args(args)
        opts = options_from_args(ns)
        if use_prefect(ns.orchestrate, dry_run=opts.dry_run):
            from flows.prefect_glue import exit_code

            flow = build_flow()
            return exit_code(flow(
                tickers=list(opts.tickers), days=opts.days, end_date=opts.end_date.isoformat() if opts.end_date else None,
                delay=opts.delay, rate_limit_sleep=opts.rate_limit_sleep, batch=opts.batch, max_retries=opts.max_retries,
                timeout=opts.timeout, retry_wait=opts.retry_wait, cache_dir=str(opts.cache_dir), refresh=opts.refresh, command=command,
                rate=f"{opts.rate_per_min:g}/min", rate_budget=opts.rate_budget, return_state=True,
            ))
        code, _ = run_backfill(opts, command=command)
        return code

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
