"""The daily pipeline: five stages in order, each idempotent and each runnable alone.

    daily-pipeline                          (all five, as of the last closed NYSE session)
    daily-pipeline --stages trending,allocation --as-of 2025-06-30

1. ``etf-ohlc``       the ETF backfill, incremental            → collected_daily_etf_ohlc
2. ``etf-holdings``   top holdings of the 11 sector ETFs         → collected_meta_etf
3. ``trending``       sector returns vs SPY over 5/10/20 sessions → analytics_trending_sectors
4. ``stock-history``  daily bars of the top sectors' holdings    → collected_daily_stock_history
5. ``allocation``     market-cap weights over those stocks        → analytics_portfolio_allocation

One run runs the chosen stages in order (in Prefect: one subflow per stage). A stage whose
stored inputs are missing says which stage to run first (exit 2); a rate limit stops the run and
prints the command that resumes from that stage (exit 75). Stages write whole as-of dates in
one transaction, so rerunning a stage gives the same rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.etf_backfill import BackfillOptions, run_backfill
from flows.runtime import (
    ArgumentParser,
    add_budget_flags,
    add_common_flags,
    command_line,
    int_in,
    iso_date,
    plain,
    positive_float,
    program_name,
    resume_hint,
    run_cli,
    use_prefect,
    without_flags,
)
from tasks.core.calendar import MAX_DAYS, last_closed_session, sessions_back
from tasks.core.db import default_pgdata, open_database, resolve_dsn
from tasks.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RATE_LIMITED,
    EXIT_SOME_FAILED,
    BadInput,
    MissingInputs,
    RateLimited,
    SourceError,
)
from tasks.core.tickers import ETF_UNIVERSE, SECTOR_ETFS
from tasks.pipeline.allocation import cap_weights, require_history, selected_stocks, store_allocation
from tasks.pipeline.holdings import store_holdings
from tasks.pipeline.trending import WINDOWS, compute_trending, load_adjusted
from tasks.prices.store import STOCK_TABLE
from tasks.sources.budget import DEFAULT_NAME, DEFAULT_RATE, RateBudget, parse_rate
from tasks.sources.spacing import RateLimiter
from tasks.sources.yahoo import YahooSource

FLOW_NAME = "daily-pipeline"
MODULE = "flows.daily_pipeline"
STAGES = ("etf-ohlc", "etf-holdings", "trending", "stock-history", "allocation")


@dataclass(frozen=True)
class PipelineOptions:
    stages: tuple[str, ...] = STAGES
    as_of: dt.date | None = None
    days: int = 30
    top_sectors: int = 3
    delay: float = 1.0
    rate_per_min: float = parse_rate(DEFAULT_RATE)
    rate_budget: str = DEFAULT_NAME
    rate_limit_sleep: float = 900.0
    max_retries: int = 3
    retry_wait: float = 1.0
    timeout: float = 10.0
    cache_dir: Path = Path(".cache")
    dry_run: bool = False

    def session(self) -> dt.date:
        """The as-of session: the last closed one, or the last session on or before ``as_of``."""
        return sessions_back(1, self.as_of)[-1] if self.as_of else last_closed_session()


@dataclass
class StageOutcome:
    stage: str
    code: int = EXIT_OK
    lines: list[str] = field(default_factory=list)
    rate_limited: RateLimited | None = None


def parse_stages(text: str) -> tuple[str, ...]:
    """``"all"``, names or numbers (``"trending,5"``), returned in pipeline order.

    Raises:
        BadInput: an unknown stage.
    """
    if text.strip().lower() == "all":
        return STAGES
    chosen = set()
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part.isdigit() and 1 <= int(part) <= len(STAGES):
            chosen.add(STAGES[int(part) - 1])
        elif part in STAGES:
            chosen.add(part)
        else:
            raise BadInput(f"unknown stage {part!r}: choose from {', '.join(STAGES)} (or 1-5, or all)")
    if not chosen:
        raise BadInput("--stages names no stage")
    return tuple(s for s in STAGES if s in chosen)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="daily-pipeline", description="ETF OHLC → ETF holdings → trending sectors → stock history → portfolio allocation.")
    p.add_argument("--stages", type=stage_list, default=STAGES, help=f"stages to run, in order: names or numbers, e.g. 3,4 (default: all: {', '.join(STAGES)})")
    p.add_argument("--as-of", type=iso_date, default=None, help="value date, YYYY-MM-DD (default: the last closed NYSE session)")
    p.add_argument("--days", type=int_in(21, MAX_DAYS), default=30, help="NYSE sessions of bars to keep current, at least 21 (default: %(default)s)")
    p.add_argument("--top-sectors", type=int_in(1, len(SECTOR_ETFS)), default=3, help="sectors whose holdings form the portfolio (default: %(default)s)")
    p.add_argument("--delay", type=positive_float, default=1.0, help="minimum seconds between this run's requests (default: %(default)s)")
    p.add_argument("--rate-limit-sleep", type=positive_float, default=900.0, help="first cool-down after a 429, seconds (default: %(default)s)")
    p.add_argument("--max-retries", type=int_in(0, 20), default=3, help="retries for transient failures, never 429 (default: %(default)s)")
    p.add_argument("--retry-wait", type=positive_float, default=1.0, help="first backoff in seconds (default: %(default)s)")
    p.add_argument("--timeout", type=positive_float, default=10.0, help="seconds per HTTP request (default: %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="say what each stage would do; touch nothing")
    add_budget_flags(p)
    add_common_flags(p)
    return p


def stage_list(text: str) -> tuple[str, ...]:
    import argparse

    try:
        return parse_stages(text)
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def options_from_args(ns: Any) -> PipelineOptions:
    return PipelineOptions(
        stages=ns.stages, as_of=ns.as_of, days=ns.days, top_sectors=ns.top_sectors, delay=ns.delay, rate_per_min=ns.rate,
        rate_budget=ns.rate_budget, rate_limit_sleep=ns.rate_limit_sleep, max_retries=ns.max_retries, retry_wait=ns.retry_wait,
        timeout=ns.timeout, cache_dir=ns.cache_dir, dry_run=ns.dry_run,
    )


def _backfill_options(opts: PipelineOptions, tickers: Sequence[str], **extra: Any) -> BackfillOptions:
    return BackfillOptions(
        tickers=tuple(tickers), days=opts.days, end_date=opts.session(), delay=opts.delay, rate_limit_sleep=opts.rate_limit_sleep,
        max_retries=opts.max_retries, timeout=opts.timeout, retry_wait=opts.retry_wait, cache_dir=opts.cache_dir, dry_run=opts.dry_run,
        rate_per_min=opts.rate_per_min, rate_budget=opts.rate_budget, **extra,
    )


def _source(opts: PipelineOptions, dsn: str) -> YahooSource:
    budget = RateBudget(dsn, opts.rate_budget, per_min=opts.rate_per_min, cooldown_s=opts.rate_limit_sleep)
    return YahooSource(opts.cache_dir, limiter=RateLimiter(opts.delay), budget=budget, max_retries=opts.max_retries,
                       timeout=opts.timeout, backoff_initial=opts.retry_wait)


@contextlib.contextmanager
def _database(opts: PipelineOptions, dsn: str) -> Iterator[Any]:
    """A connection for one stage; in a dry run everything it did is rolled back."""
    conn = open_database(dsn, default_pgdata(), dry_run=opts.dry_run)
    try:
        yield conn
    finally:
        if opts.dry_run:
            conn.rollback()
        conn.close()


# -- the stages ------------------------------------------------------------------------------
def _backfill_stage(stage: str, opts: PipelineOptions, dsn: str, wrap: Callable[..., Any], tickers: Sequence[str],
                    lead: list[str], **extra: Any) -> StageOutcome:
    """A stage that is a backfill (stages 1 and 4): its summary line and any rate limit become the outcome."""
    code, summary = run_backfill(_backfill_options(opts, tickers, **extra), command=f"daily-pipeline --stages {stage} --as-of {opts.session()}",
                                 wrap=wrap, database_url=dsn)
    out = StageOutcome(stage, code, list(lead))
    if summary is not None:
        out.lines.append(summary.line())
        out.rate_limited = summary.rate_limited
    return out


def etf_ohlc(opts: PipelineOptions, dsn: str, say: Callable[[str], None], wrap: Callable[..., Any]) -> StageOutcome:
    return _backfill_stage("etf-ohlc", opts, dsn, wrap, ETF_UNIVERSE, [])


def etf_holdings(opts: PipelineOptions, dsn: str, say: Callable[[str], None], wrap: Callable[..., Any]) -> StageOutcome:
    out = StageOutcome("etf-holdings")
    as_of = opts.session()
    if opts.dry_run:
        out.lines.append(f"would fetch the top holdings of {len(SECTOR_ETFS)} sector ETFs ({len(SECTOR_ETFS)} requests) as of {as_of}")
        return out
    conn = open_database(dsn, default_pgdata())
    try:
        for etf, frame in _fetch_each(SECTOR_ETFS, wrap(_source(opts, dsn).fund_holdings, "fetch-holdings"), out):
            stored = store_holdings(conn, etf, as_of, frame)
            out.lines.append(f"{etf}: {stored} holdings ({', '.join(frame['holding'].head(3))}, ...)")
    finally:
        conn.close()
    return out


def _fetch_each(names: Sequence[str], fetch: Callable[[str], Any], out: StageOutcome) -> Iterator[tuple[str, Any]]:
    """``(name, fetch(name))`` in order; a failure is noted on ``out`` (exit 1) and skipped, a rate
    limit is noted (exit 75) and ends the iteration."""
    for name in names:
        try:
            answer = fetch(name)
        except RateLimited as exc:
            out.rate_limited, out.code = exc, EXIT_RATE_LIMITED
            out.lines.append(f"{name}: rate limited; stopping")
            return
        except SourceError as exc:
            out.code = EXIT_SOME_FAILED
            out.lines.append(f"{name}: left out: {exc.reason}")
            continue
        yield name, answer


def trending(opts: PipelineOptions, dsn: str, say: Callable[[str], None], wrap: Callable[..., Any]) -> StageOutcome:
    out = StageOutcome("trending")
    as_of = opts.session()
    with _database(opts, dsn) as conn:
        if opts.dry_run:
            load_adjusted(conn, as_of, ["SPY", *SECTOR_ETFS], max(WINDOWS) + 1)
            out.lines.append(f"would rank {len(SECTOR_ETFS)} sector ETFs against SPY over {WINDOWS} sessions as of {as_of}")
            return out
        ranked = wrap(compute_trending, "rank-sectors")(conn, as_of)
    for w in WINDOWS:
        best = ranked[ranked["window"] == w].head(3)
        shown = ", ".join(f"{t} {r:+.2%}" for t, r in zip(best["ticker"], best["relative_return"], strict=True))
        out.lines.append(f"{w:>2} sessions to {as_of}: {shown}")
    return out


def stock_history(opts: PipelineOptions, dsn: str, say: Callable[[str], None], wrap: Callable[..., Any]) -> StageOutcome:
    with _database(opts, dsn) as conn:
        stocks = selected_stocks(conn, opts.session(), opts.top_sectors)
    chosen = f"{len(stocks)} stocks of the top {opts.top_sectors} sectors: {', '.join(s for s, _ in stocks[:8])}" + (", ..." if len(stocks) > 8 else "")
    return _backfill_stage("stock-history", opts, dsn, wrap, [s for s, _ in stocks], [chosen], table=STOCK_TABLE, run_name="stock-history")


def allocation(opts: PipelineOptions, dsn: str, say: Callable[[str], None], wrap: Callable[..., Any]) -> StageOutcome:
    out = StageOutcome("allocation")
    as_of = opts.session()
    with _database(opts, dsn) as conn:
        stocks = selected_stocks(conn, as_of, opts.top_sectors)
        require_history(conn, STOCK_TABLE, [s for s, _ in stocks], as_of)
        if opts.dry_run:
            out.lines.append(f"would fetch the market caps of {len(stocks)} stocks ({3 * len(stocks)} requests) and weight them")
            return out
        caps = dict(_fetch_each([s for s, _ in stocks], wrap(_source(opts, dsn).market_cap, "fetch-market-cap"), out))
        if out.rate_limited is not None:  # weights over some stocks only would be wrong: write none
            return out
        weights = cap_weights(caps)
        if not weights:
            out.code = EXIT_SOME_FAILED
            out.lines.append("no market caps: nothing written")
            return out
        sector = dict(stocks)
        store_allocation(conn, as_of, [(t, sector[t], caps[t], w) for t, w in weights.items()])
        top = sorted(weights.items(), key=lambda kv: -kv[1])[:5]
        out.lines.append(f"{len(weights)} stocks weighted as of {as_of}; largest: " + ", ".join(f"{t} {w:.1%}" for t, w in top))
    return out


RUNNERS: dict[str, Callable[..., StageOutcome]] = {
    "etf-ohlc": etf_ohlc, "etf-holdings": etf_holdings, "trending": trending, "stock-history": stock_history, "allocation": allocation,
}


def run_stage(name: str, opts: PipelineOptions, *, dsn: str, say: Callable[[str], None], wrap: Callable[..., Any] = plain) -> StageOutcome:
    """One stage; missing inputs become an outcome (exit 2) that names the stage to run first."""
    try:
        outcome = RUNNERS[name](opts, dsn, say, wrap)
    except MissingInputs as exc:
        outcome = StageOutcome(name, EXIT_BAD_INPUT, [f"cannot run: {exc}"])
    for line in outcome.lines:
        say(f"[{name}] {line}")
    return outcome


def run_pipeline(opts: PipelineOptions, *, prog: str, args: Sequence[str], say: Callable[[str], None],
                 stage: Callable[[str], StageOutcome] | None = None, dsn: str | None = None) -> tuple[int, list[StageOutcome]]:
    """Run the chosen stages in order; stop at a rate limit, missing inputs or an interrupt.

    ``stage(name)`` runs one stage (a Prefect subflow in the flow; ``run_stage`` by default).
    """
    dsn = dsn or resolve_dsn(os.environ.get("DATABASE_URL"), default_pgdata())
    run = stage or (lambda name: run_stage(name, opts, dsn=dsn, say=say))
    as_of = opts.session()
    say(f"Daily pipeline as of {as_of}: {', '.join(opts.stages)}" + (" (dry run)" if opts.dry_run else ""))
    outcomes: list[StageOutcome] = []
    for name in opts.stages:
        outcome = run(name)
        outcomes.append(outcome)
        if outcome.code == EXIT_RATE_LIMITED and outcome.rate_limited is not None:
            rest = opts.stages[opts.stages.index(name):]
            again = [*without_flags(args, {"--stages": 1, "--as-of": 1}), "--stages", ",".join(rest), "--as-of", as_of.isoformat()]
            say(resume_hint(outcome.rate_limited, opts.rate_limit_sleep, command_line(prog, again)))
            return EXIT_RATE_LIMITED, outcomes
        if outcome.code == EXIT_BAD_INPUT and not opts.dry_run:
            return EXIT_BAD_INPUT, outcomes
    failed = [o.stage for o in outcomes if o.code not in (EXIT_OK,)]
    say(f"Pipeline {'checked' if opts.dry_run else 'done'}: {len(outcomes) - len(failed)} of {len(outcomes)} stage(s) ok"
        + (f"; with problems: {', '.join(failed)}" if failed else ""))
    if any(o.code == EXIT_BAD_INPUT for o in outcomes):
        return EXIT_BAD_INPUT, outcomes
    return (EXIT_SOME_FAILED if failed else EXIT_OK), outcomes


def markdown(outcomes: list[StageOutcome], code: int, resume: str | None = None) -> str:
    rows = "\n".join(f"| {o.stage} | {o.code} | {'<br>'.join(line.replace('|', '/') for line in o.lines)} |" for o in outcomes)
    text = f"## Daily pipeline (exit code {code})\n\n| stage | exit | what happened |\n|---|---|---|\n{rows}\n"
    if resume:
        text += f"\nResume with `{resume}`.\n"
    return text


def build_flow() -> Any:
    """The Prefect flow: one subflow per stage (built on demand so plain runs never import Prefect)."""
    from prefect import flow, get_run_logger
    from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact

    from flows.prefect_glue import final_state, prefect_task

    def stage_flow(name: str) -> Any:
        @flow(name=f"pipeline-{name}", validate_parameters=False, log_prints=False)
        def stage(params: dict[str, Any]) -> StageOutcome:
            logger = get_run_logger()
            opts = options_from_params(params)

            def say(text: str) -> None:
                print(text, flush=True)
                logger.info(text)

            outcome = run_stage(name, opts, dsn=params["dsn"], say=say, wrap=prefect_task)
            create_markdown_artifact(key=f"pipeline-{name}", markdown=markdown([outcome], outcome.code),
                                     description=f"Daily pipeline stage {name}")
            return outcome

        return stage

    stage_flows = {name: stage_flow(name) for name in STAGES}

    @flow(name=FLOW_NAME, validate_parameters=False, log_prints=False)
    def daily_pipeline(stages: list[str] | None = None, as_of: str | None = None, days: int = 30, top_sectors: int = 3,
                       delay: float = 1.0, rate: str = DEFAULT_RATE, rate_budget: str = DEFAULT_NAME, rate_limit_sleep: float = 900.0,
                       max_retries: int = 3, retry_wait: float = 1.0, timeout: float = 10.0, cache_dir: str = ".cache") -> Any:
        logger = get_run_logger()
        params = {k: v for k, v in locals().items() if k != "logger"}
        opts = options_from_params(params)
        dsn = resolve_dsn(os.environ.get("DATABASE_URL"), default_pgdata())
        progress = create_progress_artifact(progress=0.0, key="daily-pipeline-progress", description="stages done, %")

        lines: list[str] = []

        def say(text: str) -> None:
            print(text, flush=True)
            lines.append(text)
            logger.info(text)

        done: list[str] = []

        def one(name: str) -> StageOutcome:
            outcome: StageOutcome = stage_flows[name](params={**params, "dsn": dsn})
            done.append(name)
            if progress is not None:
                update_progress_artifact(artifact_id=progress, progress=100.0 * len(done) / len(opts.stages))  # type: ignore[arg-type]
            return outcome

        code, outcomes = run_pipeline(opts, prog="daily-pipeline", args=[], say=say, stage=one, dsn=dsn)
        rest = [o.stage for o in outcomes if o.code == EXIT_RATE_LIMITED]
        resume = f"daily-pipeline --stages {','.join(opts.stages[opts.stages.index(rest[0]):])} --as-of {opts.session()}" if rest else None
        create_markdown_artifact(key="daily-pipeline-summary", markdown=markdown(outcomes, code, resume), description="Daily pipeline")
        return final_state(code, lines)

    return daily_pipeline


def options_from_params(params: dict[str, Any]) -> PipelineOptions:
    """PipelineOptions from the flow's (UI-visible, JSON) parameters."""
    return PipelineOptions(
        stages=parse_stages(",".join(params.get("stages") or STAGES)), as_of=dt.date.fromisoformat(params["as_of"]) if params.get("as_of") else None,
        days=int(params.get("days", 30)), top_sectors=int(params.get("top_sectors", 3)), delay=float(params.get("delay", 1.0)),
        rate_per_min=parse_rate(params.get("rate", DEFAULT_RATE)), rate_budget=params.get("rate_budget", DEFAULT_NAME),
        rate_limit_sleep=float(params.get("rate_limit_sleep", 900.0)), max_retries=int(params.get("max_retries", 3)),
        retry_wait=float(params.get("retry_wait", 1.0)), timeout=float(params.get("timeout", 10.0)),
        cache_dir=Path(params.get("cache_dir", ".cache")),
    )


def flow_params(opts: PipelineOptions) -> dict[str, Any]:
    """The flow's parameters for ``opts`` (plain JSON, as the Prefect UI shows them)."""
    return {"stages": list(opts.stages), "as_of": opts.as_of.isoformat() if opts.as_of else None, "days": opts.days,
            "top_sectors": opts.top_sectors, "delay": opts.delay, "rate": f"{opts.rate_per_min:g}/min", "rate_budget": opts.rate_budget,
            "rate_limit_sleep": opts.rate_limit_sleep, "max_retries": opts.max_retries, "retry_wait": opts.retry_wait,
            "timeout": opts.timeout, "cache_dir": str(opts.cache_dir)}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prog = program_name(MODULE, "daily-pipeline")

    def body() -> int:
        ns = build_parser().parse_args(args)
        opts = options_from_args(ns)
        try:
            if use_prefect(ns.orchestrate, dry_run=opts.dry_run):
                from flows.prefect_glue import exit_code

                code = exit_code(build_flow()(**flow_params(opts), return_state=True))
                if code == EXIT_INTERRUPTED:
                    raise KeyboardInterrupt
                return code
            code, _ = run_pipeline(opts, prog=prog, args=args, say=lambda text: print(text, flush=True))
            return code
        except KeyboardInterrupt:
            print(f"Interrupted: finished stages are kept. Rerun the unfinished stages with:\n  {command_line(prog, args)}", flush=True)
            return EXIT_INTERRUPTED

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
