"""Staggered sector runner: the 11 sector ETFs one at a time, minutes apart, resumable.

    python -m flows.staggered_sector_backfill --days 20 --delay-minutes 5 --skip-existing
    (console script: staggered-backfill; Windows: 2_run_staggered.bat)

The wait applies only between network fetches. Every ticker's rows and outcome commit
together, so Ctrl+C, SIGTERM, a crash or ``kill -9`` lose at most the ticker in flight;
``--resume`` (or a rerun with ``--skip-existing``) continues. One run per database at a time
(an advisory lock), so two runners never double the request rate.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

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
    without_flags,
)
from tasks.core.calendar import sessions_back
from tasks.core.db import default_pgdata, open_database, resolve_dsn
from tasks.core.display import Reporter, format_eta
from tasks.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_RATE_LIMITED, EXIT_SOME_FAILED, BadInput, Busy
from tasks.core.runs import finish_run, item_statuses, last_unfinished_run, reopen_run, start_run
from tasks.core.tickers import SECTOR_ETFS, parse_ticker_list, validate_ticker
from tasks.prices.backfill import BackfillPlan, Summary, plan_backfill
from tasks.prices.staggered import StaggerState, eta_seconds, fetch_and_store, run_staggered
from tasks.prices.store import ETF_TABLE
from tasks.sources.budget import DEFAULT_NAME, DEFAULT_RATE, BudgetState, RateBudget, describe_budget, parse_rate, peek_budget
from tasks.sources.cache import DownloadCache
from tasks.sources.spacing import RateLimiter
from tasks.sources.yahoo import YahooSource

FLOW_NAME = "staggered-sector-backfill"
MODULE = "flows.staggered_sector_backfill"
_LOCK_KEY = 0x53544752  # "STGR": one staggered run per database
_RUN_SHAPING = {"--tickers": 1, "--start-from": 1, "--days": 1, "--end-date": 1, "--skip-existing": 0, "--refresh": 0}


@dataclass(frozen=True)
class StaggerOptions:
    tickers: tuple[str, ...] = SECTOR_ETFS
    days: int = 20
    end_date: dt.date | None = None
    delay_minutes: float = 5.0
    skip_existing: bool = False
    refresh: bool = False
    rate_limit_sleep: float = 900.0
    max_retries: int = 3
    retry_wait: float = 1.0
    timeout: float = 10.0
    cache_dir: Path = Path(".cache")
    dry_run: bool = False
    rate_per_min: float = parse_rate(DEFAULT_RATE)
    rate_budget: str = DEFAULT_NAME


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="staggered-backfill", description="Backfill the 11 sector ETFs one ticker at a time, minutes apart, resumably.")
    add_fetch_flags(p)
    p.add_argument("--delay-minutes", type=positive_float, default=5.0, help="minutes between two network fetches; fractions allowed (default: %(default)s)")
    p.add_argument("--skip-existing", action="store_true", help="skip tickers whose stored rows already cover the last N NYSE sessions")
    p.add_argument("--start-from", metavar="TICKER", help="start at this ticker of the run order (e.g. after an interruption)")
    p.add_argument("--tickers", help=f'comma-separated tickers, run in the given order (default: {",".join(SECTOR_ETFS)})')
    p.add_argument("--dry-run", action="store_true", help="print each ticker's action (fetch / cached / skip), the waits and the ETA; touch nothing")
    p.add_argument("--resume", action="store_true", help="continue the last interrupted run with its recorded flags")
    add_common_flags(p)
    return p


def run_order(tickers: Sequence[str], start_from: str | None) -> list[str]:
    """The tickers from ``start_from`` on.

    Raises:
        BadInput: ``start_from`` is not one of ``tickers`` (the message lists them).
    """
    order = list(tickers)
    if start_from is None:
        return order
    ticker = validate_ticker(start_from)
    if ticker not in order:
        raise BadInput(f"--start-from {ticker} is not in the run order; valid: {', '.join(order)}")
    return order[order.index(ticker):]


def options_from_args(ns: Any) -> StaggerOptions:
    tickers = parse_ticker_list(ns.tickers) if ns.tickers is not None else list(SECTOR_ETFS)
    return StaggerOptions(
        tickers=tuple(run_order(tickers, ns.start_from)), days=ns.days, end_date=ns.end_date, delay_minutes=ns.delay_minutes,
        skip_existing=ns.skip_existing, refresh=ns.refresh, rate_limit_sleep=ns.rate_limit_sleep, max_retries=ns.max_retries,
        retry_wait=ns.retry_wait, timeout=ns.timeout, cache_dir=ns.cache_dir, dry_run=ns.dry_run, rate_per_min=ns.rate,
        rate_budget=ns.rate_budget,
    )


def describe_plan(plan: BackfillPlan, delay_s: float, say: Callable[[str], Any], budget: BudgetState | None = None) -> None:
    """Dry-run output: each ticker's action and why, the waits, and the ETA in UTC (at the budget's current rate)."""
    say(f"Plan: {len(plan.items)} tickers, {len(plan.sessions)} NYSE sessions {plan.sessions[0]} .. {plan.sessions[-1]}, "
        f"{delay_s / 60:g} min between network fetches")
    fetches = 0
    for item in plan.items:
        action = {"fetch": "fetch", "cache": "cached", "skip": "skip"}[item.action]
        wait = ""
        if item.action == "fetch":
            wait = f"  (after a {delay_s / 60:g} min wait)" if fetches else "  (no wait: first fetch)"
            fetches += 1
        say(f"  {item.ticker:<6} {action:<6} {item.reason}{wait}")
    first_wait = 0.0
    if budget is not None:
        say(describe_budget(budget, requests=fetches + 2 if fetches else 0, delay=delay_s))
        delay_s, first_wait = max(delay_s, budget.seconds_per_request), budget.cooldown_left_s
    seconds = eta_seconds([i.action for i in plan.items], delay_s=delay_s, fetch_s=3.0, first_wait=first_wait)
    say(f"Network fetches: {fetches}; waits: {max(0, fetches - 1)} x {delay_s / 60:g} min; {format_eta(seconds)}")


def run_stagger(
    opts: StaggerOptions,
    *,
    args: Sequence[str],
    prog: str,
    resume: bool = False,
    log: Callable[[str], Any] | None = None,
    wrap: Callable[..., Any] = plain,
) -> int:
    """The runner, with or without Prefect. Returns the exit code.

    Raises:
        BadInput: nothing to resume, or bad options.
        Busy: another staggered run holds this database's lock.
        StoreError: the database failed (the ticker in flight is rolled back).
    """
    def say(text: str) -> None:
        print(text, flush=True)
        if log is not None:
            log(text)

    dsn = resolve_dsn(os.environ.get("DATABASE_URL"), default_pgdata())
    conn = open_database(dsn, default_pgdata(), dry_run=opts.dry_run)
    try:
        if not opts.dry_run:
            _lock(conn)
        run_id: int | None = None
        if resume:
            opts, args, run_id = _resumed(conn, opts, args)
        sessions = sessions_back(opts.days, opts.end_date)
        cache = DownloadCache(opts.cache_dir)
        plan = wrap(plan_backfill, "plan")(conn, ETF_TABLE, list(opts.tickers), sessions, cache=None if opts.refresh else cache,
                                           only_missing=opts.skip_existing)
        if opts.dry_run:
            budget_state = peek_budget(conn, opts.rate_budget, opts.rate_per_min)
            conn.rollback()
            describe_plan(plan, opts.delay_minutes * 60, say, budget_state)
            return EXIT_OK
        base_args = without_flags(args, {"--start-from": 1, "--resume": 0, "--dry-run": 0})
        if run_id is None:
            params = {"tickers": list(opts.tickers), "days": opts.days, "end_date": opts.end_date.isoformat() if opts.end_date else None,
                      "delay_minutes": opts.delay_minutes, "skip_existing": opts.skip_existing, "refresh": opts.refresh,
                      "args": base_args}
            run_id = start_run(conn, FLOW_NAME, command_line(prog, args), params, list(opts.tickers))
        state = StaggerState(Summary())
        reporter = Reporter(len(plan.items), log=log)
        status = "interrupted"
        budget = RateBudget(dsn, opts.rate_budget, per_min=opts.rate_per_min, cooldown_s=opts.rate_limit_sleep)
        try:
            run_staggered(
                conn, plan, state, run_id=run_id, cache=cache, refresh=opts.refresh, reporter=reporter,
                spacing=RateLimiter(opts.delay_minutes * 60),
                make_source=lambda: YahooSource(opts.cache_dir, budget=budget, max_retries=opts.max_retries, timeout=opts.timeout,
                                                backoff_initial=opts.retry_wait),
                step=wrap(fetch_and_store, "backfill-ticker"),
            )
            status = "rate_limited" if state.summary.rate_limited else ("failed" if state.summary.failures else "done")
        finally:
            budget.close()
            reporter.close()
            finish_run(conn, run_id, status, state.summary.line())
            if status == "interrupted":
                _print_resume(say, list(opts.tickers), state.summary, prog, base_args)
        say(state.summary.line())
        if state.summary.rate_limited is not None:
            first = _first_not_done(list(opts.tickers), state.summary)
            say(resume_hint(state.summary.rate_limited, opts.rate_limit_sleep, command_line(prog, [*base_args, "--start-from", first])))
            return EXIT_RATE_LIMITED
        if state.summary.failures:
            failed = [o.ticker for o in state.summary.failures]
            say("Failed: " + "; ".join(o.describe() for o in state.summary.failures))
            retry = without_flags(base_args, {"--tickers": 1})
            say(f"Retry only the failed tickers with:\n  {command_line(prog, [*retry, '--tickers', ','.join(failed)])}")
            return EXIT_SOME_FAILED
        return EXIT_OK
    finally:
        conn.close()


def _lock(conn: psycopg.Connection[Any]) -> None:
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
    if got and got[0]:
        return
    row = conn.execute(
        "SELECT run_id, started_at FROM backfill_runs WHERE flow = %s AND status = 'running' ORDER BY run_id DESC LIMIT 1", (FLOW_NAME,)
    ).fetchone()
    which = f" (run {row[0]}, started {row[1]:%Y-%m-%d %H:%M:%S %Z})" if row else ""
    raise Busy(f"another staggered backfill is running against this database{which}; "
               "refusing to start a second one (it would double the request rate). Try again when it has finished.")


def _resumed(conn: psycopg.Connection[Any], opts: StaggerOptions, args: Sequence[str]) -> tuple[StaggerOptions, list[str], int]:
    """Options, original args and run id of the run to continue; its done tickers are left out."""
    shaped = [a for a in args if a.split("=", 1)[0] in _RUN_SHAPING]
    if shaped:
        raise BadInput(f"--resume uses the interrupted run's own flags; drop {' '.join(shaped)}")
    record = last_unfinished_run(conn, FLOW_NAME)
    if record is None:
        raise BadInput("nothing to resume: the last staggered run finished (or none has run); start a new one")
    statuses = item_statuses(conn, record.run_id)
    todo = [t for t, s in statuses.items() if s not in ("done", "skipped")]
    p = record.params
    resumed = replace(
        opts, tickers=tuple(todo), days=int(p["days"]), end_date=dt.date.fromisoformat(p["end_date"]) if p.get("end_date") else None,
        skip_existing=bool(p["skip_existing"]), refresh=bool(p.get("refresh", False)),
        delay_minutes=opts.delay_minutes if "--delay-minutes" in " ".join(args) else float(p["delay_minutes"]),
    )
    reopen_run(conn, record.run_id)
    print(f"Resuming run {record.run_id}: {len(statuses) - len(todo)} of {len(statuses)} tickers already done; "
          f"continuing with {', '.join(todo) or 'nothing'}", flush=True)
    return resumed, list(p.get("args", [])), record.run_id


def _first_not_done(order: list[str], summary: Summary) -> str:
    done = summary.done_tickers()
    return next((t for t in order if t not in done), order[-1])


def _print_resume(say: Callable[[str], Any], order: list[str], summary: Summary, prog: str, base_args: list[str]) -> None:
    done = summary.done_tickers() | {o.ticker for o in summary.failures}
    left = [t for t in order if t not in done]
    if not left:
        return
    say(f"Interrupted. To resume, run with: --start-from {left[0]}")
    say(f"  {command_line(prog, [*base_args, '--start-from', left[0]])}")
    say(f"  (or: {command_line(prog, ['--resume'])})")


def build_flow() -> Any:
    """The Prefect flow (built on demand so plain runs never import Prefect)."""
    from prefect import flow

    from flows.prefect_glue import prefect_task, run_in_flow

    @flow(name=FLOW_NAME, log_prints=False, validate_parameters=False)
    def staggered_sector_backfill(
        tickers: list[str] | None = None, days: int = 20, end_date: str | None = None, delay_minutes: float = 5.0,
        skip_existing: bool = False, refresh: bool = False, rate_limit_sleep: float = 900.0, max_retries: int = 3,
        retry_wait: float = 1.0, timeout: float = 10.0, cache_dir: str = ".cache", resume: bool = False,
        args: list[str] | None = None, prog: str = "staggered-backfill", rate: str = DEFAULT_RATE, rate_budget: str = DEFAULT_NAME,
    ) -> Any:
        opts = StaggerOptions(
            tickers=tuple(parse_ticker_list(tickers or list(SECTOR_ETFS))), days=days,
            end_date=dt.date.fromisoformat(end_date) if end_date else None, delay_minutes=delay_minutes, skip_existing=skip_existing,
            refresh=refresh, rate_limit_sleep=rate_limit_sleep, max_retries=max_retries, retry_wait=retry_wait, timeout=timeout,
            cache_dir=Path(cache_dir), rate_per_min=parse_rate(rate), rate_budget=rate_budget,
        )
        return run_in_flow(FLOW_NAME, "Staggered sector backfill",
                                  lambda log: run_stagger(opts, args=args or [], prog=prog, resume=resume, log=log, wrap=prefect_task))

    return staggered_sector_backfill


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = program_name(MODULE, "staggered-backfill")

    def body() -> int:
        ns = build_parser().parse_args(args)
        opts = options_from_args(ns)
        if use_prefect(ns.orchestrate, dry_run=opts.dry_run):
            from flows.prefect_glue import exit_code

            try:
                code = exit_code(build_flow()(
                    tickers=list(opts.tickers), days=opts.days, end_date=opts.end_date.isoformat() if opts.end_date else None,
                    delay_minutes=opts.delay_minutes, skip_existing=opts.skip_existing, refresh=opts.refresh,
                    rate_limit_sleep=opts.rate_limit_sleep, max_retries=opts.max_retries, retry_wait=opts.retry_wait,
                    timeout=opts.timeout, cache_dir=str(opts.cache_dir), resume=ns.resume, args=args, prog=prog,
                    rate=f"{opts.rate_per_min:g}/min", rate_budget=opts.rate_budget, return_state=True,
                ))
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED
            return code
        try:
            return run_stagger(opts, args=args, prog=prog, resume=ns.resume)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
