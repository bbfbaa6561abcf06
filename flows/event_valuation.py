"""Event valuation: ~137,000 events over ~5,000 tickers in minutes, not 76 hours.

    python -m flows.event_valuation --import-csv events.csv      (console script: event-valuation)

Group events by ticker, fetch each ticker's bars once (database, then cache, then network),
compute the metrics in bulk, write each group with one COPY + one UPDATE, and run tens of ticker
groups in parallel under ``--concurrency`` (a bounded thread pool; Prefect's
``ThreadPoolTaskRunner`` when orchestrated). Exit codes as everywhere: 0, 1 (some events could
not be valued), 2 (bad input, nothing written), 75 (rate limited: rerun later), 130.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from flows.fundamentals_phase import MODES as FUNDAMENTAL_MODES
from flows.fundamentals_phase import FundamentalsOptions, api_key, run_fundamentals
from flows.runtime import (
    ArgumentParser,
    add_budget_flags,
    add_common_flags,
    command_line,
    int_in,
    iso_date,
    positive_float,
    program_name,
    rate_per_min,
    resume_hint,
    run_cli,
    use_prefect,
)
from tasks.core.calendar import last_closed_session, nyse
from tasks.core.db import default_pgdata, open_database, resolve_dsn
from tasks.core.display import Reporter, format_eta
from tasks.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RATE_LIMITED,
    EXIT_SOME_FAILED,
    PipelineError,
    RateLimited,
    SourceError,
    StoreError,
)
from tasks.core.processes import start_method
from tasks.core.tickers import BENCHMARK, parse_ticker_list
from tasks.events.groups import (
    GroupResult,
    SourceSettings,
    ValuationContext,
    ValuationGroup,
    default_group_size,
    ensure_bars,
    make_groups,
    spy_series,
    value_group,
)
from tasks.events.imports import ImportResult, TickerWork, check_csv, describe_bad, import_csv, pending_by_ticker
from tasks.events.pool import GroupOutcome, process_mapper
from tasks.prices.obtain import covered_tickers, price_request
from tasks.prices.store import ETF_TABLE, STOCK_TABLE
from tasks.sources.budget import DEFAULT_NAME, DEFAULT_RATE, RateBudget, describe_budget, parse_rate, peek_budget
from tasks.sources.cache import DownloadCache
from tasks.sources.fmp import FREE_DAILY_LIMIT

FLOW_NAME = "event-valuation"
# Downloads cost CPU (yfinance parsing) under the GIL: with this many to do, spread them over processes.
# Below it, spawning processes (2-3 s each to import) costs more than it saves.
PROCESS_THRESHOLD = 200
MODULE = "flows.event_valuation"


@dataclass(frozen=True)
class ValuationOptions:
    import_csv: Path | None = None
    skip_bad_rows: bool = False
    import_only: bool = False
    overwrite: bool = False
    tickers: tuple[str, ...] | None = None
    dry_run: bool = False
    concurrency: int = 10
    processes: int | None = None
    group_size: int | None = None
    delay: float = 0.1
    max_retries: int = 3
    retry_wait: float = 1.0
    timeout: float = 10.0
    rate_limit_sleep: float = 900.0
    refresh: bool = False
    cache_dir: Path = Path(".cache")
    as_of: dt.date | None = None
    rate_per_min: float = parse_rate(DEFAULT_RATE)
    rate_budget: str = DEFAULT_NAME
    fundamentals: FundamentalsOptions = field(default_factory=FundamentalsOptions)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="event-valuation", description="Import events and value them: returns, excess returns, momentum, volatility.")
    p.add_argument("--import-csv", type=Path, metavar="FILE", help="load events (ticker,event_time,source) before valuing; re-importing adds nothing")
    p.add_argument("--skip-bad-rows", action="store_true", help="import the good rows of a file with bad ones (listed; exit code 1) instead of rejecting it")
    p.add_argument("--import-only", action="store_true", help="import and stop (no valuation)")
    p.add_argument("--overwrite", action="store_true", help="revalue every event, not only pending ones")
    p.add_argument("--tickers", help='comma-separated tickers to value (default: all with pending events)')
    p.add_argument("--dry-run", action="store_true", help="print how many events, tickers, groups and network fetches a run would make; touch nothing")
    p.add_argument("--concurrency", type=int_in(1, 64), default=10, help="ticker groups in flight at once (default: %(default)s)")
    p.add_argument("--processes", type=int_in(1, 64), default=None,
                   help="worker processes sharing the --concurrency threads (default: one per core; on platforms "
                        f"without fork, only when at least {PROCESS_THRESHOLD} tickers need the network)")
    p.add_argument("--group-size", type=int_in(1, 100_000), default=None, help="tickers per group (default: about 40 groups per run)")
    p.add_argument("--delay", type=positive_float, default=0.1, help="minimum seconds between any two requests to Yahoo (default: %(default)s)")
    p.add_argument("--max-retries", type=int_in(0, 20), default=3, help="retries for transient failures only, never 429 (default: %(default)s)")
    p.add_argument("--retry-wait", type=positive_float, default=1.0, help="first backoff in seconds, doubling with jitter (default: %(default)s)")
    p.add_argument("--timeout", type=positive_float, default=10.0, help="seconds per HTTP request (default: %(default)s)")
    p.add_argument("--rate-limit-sleep", type=positive_float, default=900.0, help="on HTTP 429: cool the shared budget down this long (doubling while a block lasts), stop, advise when to rerun (default: %(default)s)")
    p.add_argument("--refresh", action="store_true", help="ignore the download cache for fetches that are needed")
    p.add_argument("--as-of", type=iso_date, default=None, help="value with bars up to this date only, YYYY-MM-DD (default: the last closed NYSE session)")
    p.add_argument("--fundamentals", choices=FUNDAMENTAL_MODES, default="auto",
                   help="fmp: also write market_cap, pe_ttm, ps_ttm from Financial Modeling Prep (needs FMP_API_KEY); "
                        "auto: when FMP_API_KEY is set (default: %(default)s)")
    p.add_argument("--fmp-daily-limit", type=int_in(1, 10_000_000), default=FREE_DAILY_LIMIT,
                   help="FMP requests allowed per UTC day, shared by every run (default: %(default)s, the free plan)")
    p.add_argument("--fmp-rate", type=rate_per_min, default=parse_rate("60/min"), metavar="N/UNIT",
                   help="FMP request rate, shared by every run (default: 60/min)")
    add_budget_flags(p)
    add_common_flags(p)
    return p


def options_from_args(ns: Any) -> ValuationOptions:
    return ValuationOptions(
        import_csv=ns.import_csv, skip_bad_rows=ns.skip_bad_rows, import_only=ns.import_only, overwrite=ns.overwrite,
        tickers=tuple(parse_ticker_list(ns.tickers)) if ns.tickers is not None else None, dry_run=ns.dry_run,
        concurrency=ns.concurrency, processes=ns.processes, group_size=ns.group_size, delay=ns.delay, max_retries=ns.max_retries, retry_wait=ns.retry_wait,
        timeout=ns.timeout, rate_limit_sleep=ns.rate_limit_sleep, refresh=ns.refresh, cache_dir=ns.cache_dir, as_of=ns.as_of,
        rate_per_min=ns.rate, rate_budget=ns.rate_budget,
        fundamentals=FundamentalsOptions(mode=ns.fundamentals, daily_limit=ns.fmp_daily_limit, rate_per_min=ns.fmp_rate,
                                         cooldown_s=ns.rate_limit_sleep),
    )


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
    """The last session whose bars a run may use: ``--as-of`` (or before it), else the last closed one."""
    last = last_closed_session()
    if as_of is None or as_of >= last:
        return last
    return nyse().date_to_session(pd.Timestamp(as_of), direction="previous").date()


def plan_fetches(conn: Any, work: list[TickerWork], table: str, cache: DownloadCache, last: dt.date) -> tuple[int, int]:
    """(network fetches, cache reads) a run would make: tickers whose range is neither fetched before nor fully stored."""
    requests = [r for r in (price_request(w.ticker, w.first, w.last, last) for w in work) if r is not None]
    if not requests:
        return 0, 0
    stored = dict(conn.execute(
        f"SELECT r.ticker, count(b.trade_date) FROM unnest(%s::text[], %s::date[], %s::date[]) AS r(ticker, s, e)"  # noqa: S608
        f" LEFT JOIN {table} b ON b.ticker = r.ticker AND b.trade_date BETWEEN r.s AND r.e GROUP BY r.ticker",
        ([r.symbol for r in requests], [r.start for r in requests], [r.end for r in requests])).fetchall())
    complete = covered_tickers(conn, table, requests, stored)
    network = cached = 0
    for r in requests:
        if r.symbol in complete:
            continue
        if cache.get(r) is not None:
            cached += 1
        else:
            network += 1
    return network, cached


def run_valuation(opts: ValuationOptions, *, command: str, log: Callable[[str], Any] | None = None,
                  mapper: Callable[..., Iterator[GroupOutcome]] | None = None) -> int:
    """Price metrics for every pending event, then (with an FMP key) their valuation multiples."""
    def say(text: str) -> None:
        print(text, flush=True)
        if log is not None:
            log(text)

    api_key(opts.fundamentals)  # a missing key is a usage error before anything runs
    code = value_prices(opts, command=command, log=log, mapper=mapper)
    if code in (EXIT_RATE_LIMITED, EXIT_BAD_INPUT) or opts.import_only:
        return code
    dsn = resolve_dsn(os.environ.get("DATABASE_URL"), default_pgdata())
    phase = run_fundamentals(opts.fundamentals, dsn=dsn, cache_dir=opts.cache_dir, overwrite=opts.overwrite,
                             tickers=list(opts.tickers) if opts.tickers else None, dry_run=opts.dry_run, command=command, say=say,
                             timeout=opts.timeout, max_retries=opts.max_retries, retry_wait=opts.retry_wait)
    return max(code, phase)


def value_prices(opts: ValuationOptions, *, command: str, log: Callable[[str], Any] | None = None,
                 mapper: Callable[..., Iterator[GroupOutcome]] | None = None) -> int:
    """Import (optional), plan, then value every group; returns the exit code.

    ``mapper(groups, ctx, concurrency)`` yields each group's result (or its exception) as it
    completes: a bounded thread pool by default, Prefect tasks in the flow.

    Raises:
        BadInput: bad file or flags (nothing written).
        StoreError: the database is unreachable.
    """
    def say(text: str) -> None:
        print(text, flush=True)
        if log is not None:
            log(text)

    checked = check_csv(opts.import_csv, skip_bad_rows=opts.skip_bad_rows) if opts.import_csv is not None else None
    dsn = resolve_dsn(os.environ.get("DATABASE_URL"), default_pgdata())
    conn = open_database(dsn, default_pgdata(), dry_run=opts.dry_run)
    code = EXIT_OK
    try:
        if opts.import_csv is not None:  # in a dry run this happens inside the transaction that is rolled back
            imported: ImportResult = import_csv(conn, opts.import_csv, skip_bad_rows=opts.skip_bad_rows, checked=checked)
            would = "Would import" if opts.dry_run else "Imported"
            say(f"{would} {imported.inserted:,} new event(s) from {opts.import_csv} ({imported.duplicates:,} already present)")
            if imported.bad:
                say(f"Skipped {describe_bad(imported.bad)}")
                code = EXIT_SOME_FAILED
        if opts.import_only:
            if opts.dry_run:
                conn.rollback()
            return code
        work = pending_by_ticker(conn, overwrite=opts.overwrite, tickers=list(opts.tickers) if opts.tickers else None)
        events = sum(w.events for w in work)
        if not work:
            say("Nothing to value: every event is valued (use --overwrite to revalue).")
            return code
        group_size = opts.group_size or default_group_size(len(work))
        groups = make_groups([(w.ticker, w.events) for w in work], group_size)
        cache = DownloadCache(opts.cache_dir)
        cheap_start = start_method() == "fork"
        # The fetch count only decides whether processes pay off where they are slow to start.
        network, cached = plan_fetches(conn, work, STOCK_TABLE, cache, as_of_session(opts.as_of)) if opts.dry_run or not cheap_start else (0, 0)
        if opts.dry_run:
            budget_state = peek_budget(conn, opts.rate_budget, opts.rate_per_min)
            conn.rollback()
            say(f"Would value {events:,} events of {len(work):,} tickers in {len(groups)} groups of up to {group_size} tickers "
                f"({opts.concurrency} at a time); network fetches: {network:,} (+ SPY if not stored), from cache: {cached:,}")
            say(describe_budget(budget_state, requests=network + 2 if network else 0))
            return code
        last_closed = as_of_session(opts.as_of)
        ctx = ValuationContext(
            dsn=dsn, table=STOCK_TABLE, cache=cache, spy=pd.Series(dtype=float), last_closed=last_closed, overwrite=opts.overwrite,
            refresh=opts.refresh,
            source_settings=SourceSettings(opts.cache_dir, delay=opts.delay, max_retries=opts.max_retries, timeout=opts.timeout,
                                           retry_wait=opts.retry_wait,
                                           budget=RateBudget(dsn, opts.rate_budget, per_min=opts.rate_per_min, cooldown_s=opts.rate_limit_sleep)),
        )
        totals = RunTotals(events=events, tickers=len(work), groups=len(groups))
        spy_request = price_request(BENCHMARK, min(w.first for w in work), max(w.last for w in work), last_closed)
        if spy_request is not None:
            try:
                how = ensure_bars(conn, ETF_TABLE, spy_request, ctx)
                say(f"Benchmark SPY {spy_request.start} .. {spy_request.end}: {how}")
            except RateLimited as exc:
                say(resume_hint(exc, opts.rate_limit_sleep, command))
                return EXIT_RATE_LIMITED
            except SourceError as exc:
                say(f"Benchmark SPY unavailable ({exc.reason}): excess returns will be empty")
            ctx.spy = spy_series(conn, ETF_TABLE, spy_request.start, spy_request.end)
        conn.close()
        reporter = Reporter(len(groups), log=log)
        say(f"Valuing {events:,} events of {len(work):,} tickers in {len(groups)} groups, {opts.concurrency} at a time")
        try:
            processes = opts.processes or ((os.cpu_count() or 1) if cheap_start or network >= PROCESS_THRESHOLD else 1)
            run = mapper or partial(process_mapper, processes=processes)
            for outcome in run(groups, ctx, opts.concurrency):
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
        say(totals.line())
        if totals.rate_limited is not None:
            say(resume_hint(totals.rate_limited, opts.rate_limit_sleep, command) + "\n(valued events are kept; a rerun values only the rest)")
            return EXIT_RATE_LIMITED
        if totals.failed_groups or totals.total("error") or totals.total("no_data"):
            return EXIT_SOME_FAILED if (totals.failed_groups or totals.total("error")) else max(code, EXIT_OK)
        return code
    finally:
        if not conn.closed:
            if opts.dry_run:
                conn.rollback()
            conn.close()


def prefect_mapper(concurrency: int) -> Callable[..., Iterator[GroupOutcome]]:
    """Map groups as Prefect tasks (retried twice on database errors) on a bounded thread pool."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.futures import as_completed

    def only_store_errors(_task: Any, _run: Any, state: Any) -> bool:
        try:
            state.result()
        except StoreError:
            return True
        except Exception:
            return False
        return False

    value_task = task(name="value-group", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=1,
                      retry_condition_fn=only_store_errors)(value_group)

    def mapper(groups: list[ValuationGroup], ctx: ValuationContext, _: int) -> Iterator[GroupOutcome]:
        ctx = replace(ctx, fetch_threads=concurrency)
        futures = {value_task.submit(g, ctx): g for g in groups}
        for future in as_completed(list(futures)):
            try:
                yield future.result()
            except PipelineError as exc:
                yield futures[future].index, str(exc)

    return mapper


def build_flow(concurrency: int) -> Any:
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.prefect_glue import run_in_flow

    @flow(name=FLOW_NAME, task_runner=ThreadPoolTaskRunner(max_workers=concurrency), validate_parameters=False, log_prints=False)  # type: ignore[arg-type]
    def event_valuation(import_csv: str | None = None, skip_bad_rows: bool = False, import_only: bool = False, overwrite: bool = False,
                        tickers: list[str] | None = None, concurrency: int = 10, group_size: int | None = None, delay: float = 0.1,
                        max_retries: int = 3, retry_wait: float = 1.0, timeout: float = 10.0, rate_limit_sleep: float = 900.0,
                        refresh: bool = False, cache_dir: str = ".cache", as_of: str | None = None,
                        command: str = "event-valuation", rate: str = DEFAULT_RATE, rate_budget: str = DEFAULT_NAME,
                        fundamentals: str = "auto", fmp_daily_limit: int = FREE_DAILY_LIMIT, fmp_rate: str = "60/min") -> Any:
        opts = ValuationOptions(
            import_csv=Path(import_csv) if import_csv else None, skip_bad_rows=skip_bad_rows, import_only=import_only,
            overwrite=overwrite, tickers=tuple(tickers) if tickers else None, concurrency=concurrency, group_size=group_size,
            delay=delay, max_retries=max_retries, retry_wait=retry_wait, timeout=timeout, rate_limit_sleep=rate_limit_sleep,
            refresh=refresh, cache_dir=Path(cache_dir), as_of=dt.date.fromisoformat(as_of) if as_of else None,
            rate_per_min=parse_rate(rate), rate_budget=rate_budget,
            fundamentals=FundamentalsOptions(mode=fundamentals, daily_limit=fmp_daily_limit, rate_per_min=parse_rate(fmp_rate),
                                             cooldown_s=rate_limit_sleep),
        )
        return run_in_flow(FLOW_NAME, "Event valuation",
                                  lambda log: run_valuation(opts, command=command, log=log, mapper=prefect_mapper(concurrency)))

    return event_valuation


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = command_line(program_name(MODULE, "event-valuation"), args)

    def body() -> int:
        ns = build_parser().parse_args(args)
        opts = options_from_args(ns)
        try:
            if use_prefect(ns.orchestrate, dry_run=opts.dry_run):
                from flows.prefect_glue import exit_code

                code = exit_code(build_flow(opts.concurrency)(
                    import_csv=str(opts.import_csv) if opts.import_csv else None, skip_bad_rows=opts.skip_bad_rows,
                    import_only=opts.import_only, overwrite=opts.overwrite, tickers=list(opts.tickers) if opts.tickers else None,
                    concurrency=opts.concurrency, group_size=opts.group_size, delay=opts.delay, max_retries=opts.max_retries,
                    retry_wait=opts.retry_wait, timeout=opts.timeout, rate_limit_sleep=opts.rate_limit_sleep, refresh=opts.refresh,
                    cache_dir=str(opts.cache_dir), as_of=opts.as_of.isoformat() if opts.as_of else None, command=command,
                    rate=f"{opts.rate_per_min:g}/min", rate_budget=opts.rate_budget, fundamentals=opts.fundamentals.mode,
                    fmp_daily_limit=opts.fundamentals.daily_limit, fmp_rate=f"{opts.fundamentals.rate_per_min:g}/min",
                    return_state=True,
                ))
                if code == EXIT_INTERRUPTED:
                    raise KeyboardInterrupt
                return code
            return run_valuation(opts, command=command)
        except KeyboardInterrupt:
            print(f"Interrupted: groups already written are kept. Run the same command again to value the rest:\n  {command}", flush=True)
            return EXIT_INTERRUPTED

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
