"""The bodies of the pipeline's stages (the runner, options and order are in ``stages.py``).

Each takes the run's options, the database and ``wrap`` (a Prefect task wrapper, or plain) and
returns a ``StageOutcome``; fetching stages go through the same plan/cache/budget path as the
backfills, so a rerun fetches only what is missing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tasks.core.db import open_database
from tasks.core.errors import MissingInputs, Outcome, RateLimited, SourceError
from tasks.core.tickers import ETF_UNIVERSE, SECTOR_ETFS
from tasks.pipeline.allocation import (
    SHARES_LOOKBACK_DAYS,
    cap_weights,
    positions,
    require_history,
    sector_members,
    selected_stocks,
    shares_due,
    store_allocation,
    store_shares,
)
from tasks.pipeline.holdings import FALLBACK, SPONSOR, first_fund, later_snapshots, latest_holdings, store_holdings
from tasks.pipeline.options import BENCHMARKS, PipelineOptions, StageOutcome
from tasks.pipeline.retention import apply_retention
from tasks.pipeline.trending import WINDOWS, compute_trending, compute_trending_stocks, leaders, relative_returns, sector_prices
from tasks.prices.backfill_run import BackfillOptions, run_backfill
from tasks.prices.store import BENCHMARK_TABLE, ETF_TABLE, STOCK_TABLE
from tasks.sources.budget import RateBudget, describe_budget, peek_budget
from tasks.sources.ssga import BUDGET_NAME, SsgaHoldings
from tasks.sources.yahoo import YahooSource


def _source(opts: PipelineOptions, dsn: str) -> YahooSource:
    return opts.source.source(opts.source.budget(dsn))


@contextlib.contextmanager
def _database(opts: PipelineOptions, dsn: str) -> Iterator[Any]:
    """A connection for one stage; in a dry run everything it did is rolled back."""
    conn = open_database(dsn, dry_run=opts.dry_run)
    try:
        yield conn
    finally:
        if opts.dry_run:
            conn.rollback()
        conn.close()


def _backfill(out: StageOutcome, opts: PipelineOptions, dsn: str, wrap: Callable[..., Any], tickers: Sequence[str], *,
              table: str, run_name: str) -> bool:
    """Backfill ``tickers`` into ``table`` as one step of ``out``'s stage; True when the stage must stop (rate limit)."""
    backfill = BackfillOptions(tickers=tuple(tickers), days=opts.days, end_date=opts.session(), dry_run=opts.dry_run,
                               source=opts.source, table=table, run_name=run_name)
    end = run_backfill(backfill, dsn=dsn, command=f"daily-pipeline --stages {out.stage} --end {opts.session()}", wrap=wrap)
    out.code, summary = max(out.code, end.code), end.detail
    if summary is not None:  # run_backfill said its summary line: the stage keeps it for its artifact, not to say again
        out.said.add(len(out.lines))
        out.lines.append(f"{table}: {summary.line()}")
        if summary.rate_limited is not None:
            out.rate_limited = summary.rate_limited
            return True
    return False


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
            out.code = max(out.code, Outcome.SOME_FAILED)
            out.lines.append(f"{name}: left out: {exc.reason}")
            continue
        yield name, answer


def _shown(items: Sequence[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f", ... (+{len(items) - limit})" if len(items) > limit else "")


def _best(ranked: Any, count: int = 3) -> str:
    """The first ``count`` rows of a ranking as "XLK +1.23%, ..."."""
    top = ranked.head(count)
    return ", ".join(f"{t} {r:+.2%}" for t, r in zip(top["ticker"], top["relative_return"], strict=True))


# -- 1 ---------------------------------------------------------------------------------------
def etf_ohlc(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
    """SPY and the sector funds into the ETF table, then the benchmarks (SPY, QQQ) into their own
    table: SPY's bars come from the cache the first backfill just filled."""
    out = StageOutcome("etf-ohlc")
    if not _backfill(out, opts, dsn, wrap, ETF_UNIVERSE, table=ETF_TABLE, run_name="etf-backfill"):
        _backfill(out, opts, dsn, wrap, BENCHMARKS, table=BENCHMARK_TABLE, run_name="benchmark-backfill")
    return out


# -- 2 ---------------------------------------------------------------------------------------
def etf_holdings(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
    """Every constituent of each sector fund from the sponsor's file; Yahoo's top holdings where that fails."""
    out = StageOutcome("etf-holdings")
    as_of = opts.session()
    sponsor = SsgaHoldings(opts.source.cache_dir, url=opts.holdings_url, budget=None if opts.dry_run else RateBudget(
        dsn, BUDGET_NAME, per_min=opts.holdings_rate, cooldown_s=opts.source.rate_limit_sleep), max_retries=opts.source.max_retries,
        backoff_initial=opts.source.retry_wait, timeout=max(opts.source.timeout, 20.0))
    if opts.dry_run:
        fresh = [etf for etf in SECTOR_ETFS if sponsor.cached(etf) is not None]
        with _database(opts, dsn) as conn:
            budget = peek_budget(conn, BUDGET_NAME, opts.holdings_rate)
        out.lines.append(f"would read the sponsor's holdings files of {len(SECTOR_ETFS)} sector funds: {len(fresh)} fresh in the cache, "
                         f"{len(SECTOR_ETFS) - len(fresh)} to download")
        out.lines.append(describe_budget(budget, requests=len(SECTOR_ETFS) - len(fresh)))
        return out
    yahoo: list[YahooSource] = []

    def one(etf: str) -> tuple[dt.date, str, Any, str]:
        try:
            got = sponsor.holdings(etf)
            note = f"{got.skipped} cash/futures line(s) left out" + (", from the cache" if got.from_cache else "")
            return got.as_of, SPONSOR, got.holdings, f"State Street file as of {got.as_of} ({note})"
        except RateLimited:
            raise
        except SourceError as exc:
            if not yahoo:
                yahoo.append(_source(opts, dsn))
            top = yahoo[0].fund_holdings(etf)
            return as_of, FALLBACK, top, f"Yahoo's top {len(top)} holdings only: the sponsor's file failed ({exc.reason})"

    conn = open_database(dsn)
    try:
        for etf, (day, source, frame, how) in _fetch_each(SECTOR_ETFS, wrap(one, "fetch-holdings"), out):
            stored = store_holdings(conn, etf, day, frame, source)
            out.lines.append(f"{etf}: {stored} stocks, {how}")
            if source == FALLBACK:
                out.code = max(out.code, Outcome.SOME_FAILED)
    finally:
        conn.close()
    return out


# -- 3 ---------------------------------------------------------------------------------------
def trending(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
    """Rank the sectors, fetch the missing bars of the top sectors' stocks, rank those stocks."""
    out = StageOutcome("trending")
    as_of = opts.session()
    with _database(opts, dsn) as conn:
        if opts.dry_run:
            ranked = relative_returns(sector_prices(conn, as_of))
        else:
            ranked = wrap(compute_trending, "rank-sectors")(conn, as_of)
        chosen = leaders(ranked, opts.top_sectors)
        snapshots = sector_members(conn, chosen, as_of)
    for w in WINDOWS:
        out.lines.append(f"sectors, {w:>2} sessions to {as_of}: {_best(ranked[ranked['window_sessions'] == w])}")
    members = {etf: [s for s, _ in snapshots[etf].holdings] for etf in chosen}
    stocks = list(first_fund(snapshots, chosen))
    out.lines.append(f"top {len(chosen)} sectors {', '.join(chosen)}: {len(stocks)} stocks")
    if _backfill(out, opts, dsn, wrap, stocks, table=STOCK_TABLE, run_name="trending-stocks") or opts.dry_run:
        return out
    with _database(opts, dsn) as conn:
        ranked_stocks, lacking = wrap(compute_trending_stocks, "rank-stocks")(conn, as_of, members)
    window = max(WINDOWS)
    for etf in chosen:
        best = _best(ranked_stocks[(ranked_stocks["window_sessions"] == window) & (ranked_stocks["sector_ticker"] == etf)])
        out.lines.append(f"{etf} stocks, {window} sessions: {best or 'none ranked'}")
    if lacking:
        out.code = max(out.code, Outcome.SOME_FAILED)
        out.lines.append(f"not ranked (bars missing in the {window + 1} sessions): {_shown(lacking)}")
    return out


# -- 4 ---------------------------------------------------------------------------------------
def stock_history(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
    """Daily bars of every constituent of every sector fund, only the sessions not stored yet."""
    out = StageOutcome("stock-history")
    as_of = opts.session()
    with _database(opts, dsn) as conn:
        snapshots = latest_holdings(conn, SECTOR_ETFS, as_of)
    if not snapshots:
        raise MissingInputs("no holdings stored: run stage 2 (etf-holdings) first", "etf-holdings")
    stocks = list(first_fund(snapshots, SECTOR_ETFS))
    missing = [etf for etf in SECTOR_ETFS if etf not in snapshots]
    lacking = f" (no holdings for {', '.join(missing)})" if missing else ""
    out.lines.append(f"{len(stocks)} stocks in {len(snapshots)} sector funds{lacking}")
    late = later_snapshots(snapshots, as_of)
    if late:
        out.lines.append(late)
    _backfill(out, opts, dsn, wrap, stocks, table=STOCK_TABLE, run_name="stock-history")
    return out


# -- 5 ---------------------------------------------------------------------------------------
def allocation(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
    """Weights by market cap as of the date: shares outstanding known then × that date's close."""
    out = StageOutcome("allocation")
    as_of = opts.session()
    with _database(opts, dsn) as conn:
        stocks = selected_stocks(conn, as_of, opts.top_sectors)
        tickers = [s for s, _ in stocks]
        require_history(conn, tickers, as_of)
        due = shares_due(conn, tickers, as_of)
        if opts.dry_run:
            budget = peek_budget(conn, opts.source.rate_budget, opts.source.rate_per_min)
            out.lines.append(f"would fetch the shares-outstanding history of {len(due)} of {len(stocks)} stocks ({len(due)} requests) "
                             f"and weight them as of {as_of}")
            out.lines.append(describe_budget(budget, requests=len(due), delay=opts.source.delay))
            return out
        if due:
            source = _source(opts, dsn)
            start = as_of - dt.timedelta(days=SHARES_LOOKBACK_DAYS)
            fetch = wrap(lambda t: source.shares_history(t, start, as_of), "fetch-shares")
            for ticker, observed in _fetch_each(due, fetch, out):
                store_shares(conn, ticker, as_of, observed)
            if out.rate_limited is not None:  # weights over some stocks only would be wrong: write none
                return out
        held, lacking = positions(conn, stocks, as_of)
        weights = cap_weights({p.ticker: p.market_cap for p in held})
        if lacking:
            out.code = max(out.code, Outcome.SOME_FAILED)
            out.lines.append(f"left out (no shares-outstanding figure or close known on {as_of}): {_shown(lacking)}")
        if not weights:
            out.code = Outcome.SOME_FAILED
            out.lines.append("no market caps: nothing written")
            return out
        store_allocation(conn, as_of, [p for p in held if p.ticker in weights], weights)
    top = sorted(weights.items(), key=lambda kv: -kv[1])[:5]
    out.lines.append(f"{len(weights)} stocks weighted as of {as_of}; largest: " + ", ".join(f"{t} {w:.1%}" for t, w in top))
    return out


# -- retention -------------------------------------------------------------------------------
def retention(opts: PipelineOptions, dsn: str, wrap: Callable[..., Any]) -> StageOutcome:
    """Delete rows older than their window (see ``retention.py``); a dry run counts them."""
    out = StageOutcome("retention")
    w = opts.retention
    with _database(opts, dsn) as conn:
        counts = wrap(apply_retention, "retention")(conn, w, dry_run=opts.dry_run)
    verb = "would delete" if opts.dry_run else "deleted"
    out.lines.append(f"windows: real-time data {w.realtime_days} days, daily history {w.daily_days} days, logs {w.log_days} days")
    shown = [f"{n:,} from {t}" for t, n in counts.items() if n]
    out.lines.append(f"{verb} {sum(counts.values()):,} rows" + (f": {', '.join(shown)}" if shown else ""))
    return out
