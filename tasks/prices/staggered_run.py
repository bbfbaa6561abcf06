"""The staggered sector runner around its loop: plan, one runner per database (advisory lock),
``--resume`` from the run records, the run loop (``staggered.py``), and the lines that say how to
continue (interrupt, rate limit, failed tickers)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from tasks.core.calendar import planned_sessions
from tasks.core.commands import RunEnd, command_line, ended, plain, without_flags
from tasks.core.db import database_errors, open_database
from tasks.core.display import ProgressSink, Reporter, format_eta, printer
from tasks.core.errors import BadInput, Busy, Outcome
from tasks.core.runs import finish_run, item_statuses, last_unfinished_run, reopen_run, start_run
from tasks.core.tickers import SECTOR_ETFS, validate_ticker
from tasks.prices.backfill import NO_DATA_NOTE, BackfillPlan, Summary, plan_backfill
from tasks.prices.staggered import StaggerState, fetch_and_store, stagger_eta_seconds, stagger_fetches
from tasks.prices.store import ETF_TABLE
from tasks.sources.budget import BudgetState, describe_budget, peek_budget
from tasks.sources.settings import SourceSettings
from tasks.sources.spacing import MinIntervalGate

RUN_NAME = "staggered-sector-backfill"  # how runs are recorded in backfill_runs (and found by --resume)
_LOCK_KEY = 0x53544752  # "STGR": one staggered run per database
# The flags that shape a run: --resume takes the interrupted run's own (RUN_SHAPING: flag → values it takes).
RUN_SHAPING = {"--tickers": 1, "--start-from": 1, "--days": 1, "--end": 1, "--end-date": 1, "--skip-existing": 0, "--refresh": 0}


@dataclass(frozen=True)
class StaggerOptions:
    tickers: tuple[str, ...] = SECTOR_ETFS
    days: int = 20
    end_date: dt.date | None = None
    delay_minutes: float = 5.0
    skip_existing: bool = False
    dry_run: bool = False
    source: SourceSettings = field(default_factory=SourceSettings)


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


def describe_stagger_plan(plan: BackfillPlan, delay_s: float, say: Callable[[str], Any], budget: BudgetState | None = None) -> None:
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
        say(describe_budget(budget, requests=None))  # the ETA below spaces the fetches at the slower of it and the delay
        delay_s, first_wait = max(delay_s, budget.seconds_per_request), budget.cooldown_left_s
    seconds = stagger_eta_seconds([i.action for i in plan.items], delay_s=delay_s, fetch_s=3.0, first_wait=first_wait)
    say(f"Network fetches: {fetches}; waits: {max(0, fetches - 1)} x {delay_s / 60:g} min; {format_eta(seconds)}")


def run_staggered_backfill(
    opts: StaggerOptions,
    *,
    dsn: str,
    args: Sequence[str],
    prog: str,
    resume: bool = False,
    log: Callable[[str], Any] | None = None,
    progress: ProgressSink | None = None,
    wrap: Callable[..., Any] = plain,
) -> RunEnd:
    """The runner, with or without Prefect. Returns how it ended (its ``detail``: the ``Summary``).

    Raises:
        BadInput: nothing to resume, or bad options.
        Busy: another staggered run holds this database's lock.
        StoreError: the database failed (the ticker in flight is rolled back).
    """
    say = printer(log)

    conn = open_database(dsn, dry_run=opts.dry_run)
    try:
        if not opts.dry_run:
            lock_runner(conn)
        run_id: int | None = None
        if resume:
            opts, args, run_id = resumed_options(conn, opts, args)
        settings = opts.source
        sessions = planned_sessions(opts.days, opts.end_date, say)
        cache = settings.cache()
        plan = wrap(plan_backfill, "plan")(conn, ETF_TABLE, list(opts.tickers), sessions, cache=None if settings.refresh else cache,
                                           only_missing=opts.skip_existing)
        if opts.dry_run:
            budget_state = peek_budget(conn, settings.rate_budget, settings.rate_per_min)
            conn.rollback()
            describe_stagger_plan(plan, opts.delay_minutes * 60, say, budget_state)
            return RunEnd(Outcome.DONE)
        base_args = without_flags(args, {"--start-from": 1, "--resume": 0, "--dry-run": 0})
        if run_id is None:
            run_id = start_run(conn, RUN_NAME, command_line(prog, args), run_params(opts, base_args), list(opts.tickers))
        state = StaggerState(Summary())
        reporter = Reporter(len(plan.items), log=log, progress=progress)
        status = "interrupted"
        budget = settings.budget(dsn)
        try:
            with database_errors("the database failed mid-run (what committed is kept)"):
                stagger_fetches(
                    conn, plan, state, run_id=run_id, cache=cache, refresh=settings.refresh, reporter=reporter,
                    spacing=MinIntervalGate(opts.delay_minutes * 60),
                    make_source=lambda: settings.source(budget, delay=0.0),
                    step=wrap(fetch_and_store, "backfill-ticker"),
                )
            status = ("rate_limited" if state.summary.rate_limited
                      else "failed" if state.summary.failed else "done")
        except Exception:
            status = "failed"  # not an interrupt: no "--start-from" hint for it
            raise
        finally:
            budget.close()
            reporter.close()
            finish_run(conn, run_id, status, state.summary.line())
            if status == "interrupted":
                print_resume(say, list(opts.tickers), state.summary, prog, base_args)
        say(state.summary.line())
        return judge_stagger(state.summary, list(opts.tickers), prog, base_args, settings.rate_limit_sleep, say)
    finally:
        conn.close()


def run_params(opts: StaggerOptions, base_args: list[str]) -> dict[str, Any]:
    """What ``--resume`` needs to continue this run as it was asked (``resumed_options`` reads it back)."""
    return {"tickers": list(opts.tickers), "days": opts.days, "end_date": opts.end_date.isoformat() if opts.end_date else None,
            "delay_minutes": opts.delay_minutes, "skip_existing": opts.skip_existing, "refresh": opts.source.refresh,
            "args": base_args}


def judge_stagger(summary: Summary, tickers: list[str], prog: str, base_args: list[str], sleep_s: float,
                  say: Callable[[str], None]) -> RunEnd:
    """How the run ended, from its summary, with the command that continues (a rate limit) or
    retries only the failed tickers."""
    if summary.rate_limited is None and summary.only_no_data:
        say(NO_DATA_NOTE)
    elif summary.rate_limited is None and summary.failures:
        failed = [o.ticker for o in summary.failures]
        say("Failed: " + "; ".join(o.describe() for o in summary.failures))
        retry = without_flags(base_args, {"--tickers": 1})
        say(f"Retry only the failed tickers with:\n  {command_line(prog, [*retry, '--tickers', ','.join(failed)])}")
    return ended(summary, failed=summary.failed, say=say, stopped=summary.rate_limited, sleep_s=sleep_s,
                 resume=lambda: command_line(prog, [*base_args, "--start-from", first_not_done(tickers, summary)]))


def lock_runner(conn: psycopg.Connection[Any]) -> None:
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()
    if got and got[0]:
        return
    row = conn.execute(
        "SELECT run_id, started_at FROM backfill_runs WHERE flow = %s AND status = 'running' ORDER BY run_id DESC LIMIT 1", (RUN_NAME,)
    ).fetchone()
    which = f" (run {row[0]}, started {row[1]:%Y-%m-%d %H:%M:%S %Z})" if row else ""
    raise Busy(f"another staggered backfill is running against this database{which}; "
               "refusing to start a second one (it would double the request rate). Try again when it has finished.")


def resumed_options(conn: psycopg.Connection[Any], opts: StaggerOptions, args: Sequence[str]) -> tuple[StaggerOptions, list[str], int]:
    """Options, original args and run id of the run to continue; its done tickers are left out."""
    shaped = [a for a in args if a.split("=", 1)[0] in RUN_SHAPING]
    if shaped:
        raise BadInput(f"--resume uses the interrupted run's own flags; drop {' '.join(shaped)}")
    record = last_unfinished_run(conn, RUN_NAME)
    if record is None:
        raise BadInput("nothing to resume: the last staggered run finished (or none has run); start a new one")
    statuses = item_statuses(conn, record.run_id)
    todo = [t for t, s in statuses.items() if s not in ("done", "skipped")]
    p = record.params
    resumed = replace(
        opts, tickers=tuple(todo), days=int(p["days"]), end_date=dt.date.fromisoformat(p["end_date"]) if p.get("end_date") else None,
        skip_existing=bool(p["skip_existing"]), source=replace(opts.source, refresh=bool(p.get("refresh", False))),
        delay_minutes=opts.delay_minutes if {"--delay", "--delay-minutes"} & {a.split("=", 1)[0] for a in args}
        else float(p["delay_minutes"]),
    )
    reopen_run(conn, record.run_id)
    print(f"Resuming run {record.run_id} ({record.status}): {len(statuses) - len(todo)} of {len(statuses)} tickers already done; "
          f"continuing with {', '.join(todo) or 'nothing'}", flush=True)
    return resumed, list(p.get("args", [])), record.run_id


def first_not_done(order: list[str], summary: Summary) -> str:
    done = summary.done_tickers()
    return next((t for t in order if t not in done), order[-1])


def print_resume(say: Callable[[str], Any], order: list[str], summary: Summary, prog: str, base_args: list[str]) -> None:
    done = summary.done_tickers() | {o.ticker for o in summary.failures}
    left = [t for t in order if t not in done]
    if not left:
        return
    say(f"Interrupted. To resume, run with: --start-from {left[0]}")
    say(f"  {command_line(prog, [*base_args, '--start-from', left[0]])}")
    say(f"  (or: {command_line(prog, ['--resume'])})")
