"""The daily pipeline's five stages, in order, each idempotent and each runnable alone.

1. ``etf-ohlc``       the ETF backfill, incremental            → collected_daily_etf_ohlc
2. ``etf-holdings``   top holdings of the 11 sector ETFs         → collected_meta_etf
3. ``trending``       sector returns vs SPY over 5/10/20 sessions → analytics_trending_sectors
4. ``stock-history``  daily bars of the top sectors' holdings    → collected_daily_stock_history
5. ``allocation``     market-cap weights over those stocks        → analytics_portfolio_allocation

A stage whose stored inputs are missing says which stage to run first (exit 2); a rate limit stops
the run and prints the command that resumes from that stage (exit 75). Stages write whole as-of
dates in one transaction, so rerunning a stage gives the same rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.core.calendar import last_closed_session, sessions_back
from tasks.core.commands import command_line, plain, resume_hint, without_flags
from tasks.core.db import default_pgdata, open_database, resolve_dsn
from tasks.core.errors import BadInput, MissingInputs, Outcome, RateLimited, SourceError
from tasks.core.tickers import ETF_UNIVERSE, SECTOR_ETFS
from tasks.pipeline.allocation import cap_weights, require_history, selected_stocks, store_allocation
from tasks.pipeline.holdings import store_holdings
from tasks.pipeline.trending import WINDOWS, compute_trending, load_adjusted
from tasks.prices.backfill_run import BackfillOptions, run_backfill
from tasks.prices.store import STOCK_TABLE
from tasks.sources.settings import SourceSettings
from tasks.sources.yahoo import YahooSource

STAGES = ("etf-ohlc", "etf-holdings", "trending", "stock-history", "allocation")


@dataclass(frozen=True)
class PipelineOptions:
    stages: tuple[str, ...] = STAGES
    as_of: dt.date | None = None
    days: int = 30
    top_sectors: int = 3
    dry_run: bool = False
    source: SourceSettings = field(default_factory=lambda: SourceSettings(delay=1.0))

    def session(self) -> dt.date:
        """The as-of session: the last closed one, or the last session on or before ``as_of``."""
        return sessions_back(1, self.as_of)[-1] if self.as_of else last_closed_session()


@dataclass
class StageOutcome:
    stage: str
    code: Outcome = Outcome.DONE
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


def _backfill_options(opts: PipelineOptions, tickers: Sequence[str], **extra: Any) -> BackfillOptions:
    return BackfillOptions(tickers=tuple(tickers), days=opts.days, end_date=opts.session(), dry_run=opts.dry_run, source=opts.source,
                           **extra)


def _source(opts: PipelineOptions, dsn: str) -> YahooSource:
    return opts.source.source(opts.source.budget(dsn))


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
    code, summary = run_backfill(_backfill_options(opts, tickers, **extra),
                                 command=f"daily-pipeline --stages {stage} --as-of {opts.session()}",
                                 wrap=wrap, database_url=dsn)
    out = StageOutcome(stage, code, list(lead))
    if summary is not None:
        out.lines.append(summary.line())
        out.rate_limited = summary.rate_limited
    return out


def etf_ohlc(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
    return _backfill_stage("etf-ohlc", opts, dsn, wrap, ETF_UNIVERSE, [])


def etf_holdings(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
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
            out.rate_limited, out.code = exc, Outcome.RATE_LIMITED
            out.lines.append(f"{name}: rate limited; stopping")
            return
        except SourceError as exc:
            out.code = Outcome.SOME_FAILED
            out.lines.append(f"{name}: left out: {exc.reason}")
            continue
        yield name, answer


def trending(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
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


def stock_history(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
    with _database(opts, dsn) as conn:
        stocks = selected_stocks(conn, opts.session(), opts.top_sectors)
    shown = ", ".join(s for s, _ in stocks[:8]) + (", ..." if len(stocks) > 8 else "")
    chosen = f"{len(stocks)} stocks of the top {opts.top_sectors} sectors: {shown}"
    return _backfill_stage("stock-history", opts, dsn, wrap, [s for s, _ in stocks], [chosen], table=STOCK_TABLE, run_name="stock-history")


def allocation(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
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
            out.code = Outcome.SOME_FAILED
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
        outcome = RUNNERS[name](opts, dsn, wrap)
    except MissingInputs as exc:
        outcome = StageOutcome(name, Outcome.BAD_INPUT, [f"cannot run: {exc}"])
    for line in outcome.lines:
        say(f"[{name}] {line}")
    return outcome


def run_pipeline(opts: PipelineOptions, *, prog: str, args: Sequence[str], say: Callable[[str], None],
                 stage: Callable[[str], StageOutcome] | None = None, dsn: str | None = None) -> tuple[Outcome, list[StageOutcome]]:
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
        if outcome.code == Outcome.RATE_LIMITED and outcome.rate_limited is not None:
            rest = opts.stages[opts.stages.index(name):]
            again = [*without_flags(args, {"--stages": 1, "--as-of": 1}), "--stages", ",".join(rest), "--as-of", as_of.isoformat()]
            say(resume_hint(outcome.rate_limited, opts.source.rate_limit_sleep, command_line(prog, again)))
            return Outcome.RATE_LIMITED, outcomes
        if outcome.code == Outcome.BAD_INPUT and not opts.dry_run:
            return Outcome.BAD_INPUT, outcomes
    failed = [o.stage for o in outcomes if o.code not in (Outcome.DONE,)]
    say(f"Pipeline {'checked' if opts.dry_run else 'done'}: {len(outcomes) - len(failed)} of {len(outcomes)} stage(s) ok"
        + (f"; with problems: {', '.join(failed)}" if failed else ""))
    if any(o.code == Outcome.BAD_INPUT for o in outcomes):
        return Outcome.BAD_INPUT, outcomes
    return (Outcome.SOME_FAILED if failed else Outcome.DONE), outcomes


def markdown(outcomes: list[StageOutcome], code: Outcome, resume: str | None = None) -> str:
    rows = "\n".join(f"| {o.stage} | {o.code.words} | {'<br>'.join(line.replace('|', '/') for line in o.lines)} |" for o in outcomes)
    text = f"## Daily pipeline ({code.words})\n\n| stage | outcome | what happened |\n|---|---|---|\n{rows}\n"
    if resume:
        text += f"\nResume with `{resume}`.\n"
    return text
