"""The event valuation's second phase: valuation multiples from FMP, when a key is configured.

Runs after the price metrics (it needs ``price_at_event``). The key comes from ``FMP_API_KEY``
only, never a flag (flags end up in shell history and in our run records).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tasks.core.commands import RunEnd, ended
from tasks.core.db import connect, open_database
from tasks.core.errors import BadInput, Outcome
from tasks.events.fundamentals import due_tickers, fmp_requests_needed, value_fundamentals
from tasks.sources.budget import RateBudget, format_rate, parse_rate, peek_budget
from tasks.sources.fmp import BUDGET_NAME, DEFAULT_BASE_URL, FREE_DAILY_LIMIT, FmpClient
from tasks.sources.settings import SourceSettings

MODES = ("auto", "fmp", "none")


@dataclass(frozen=True)
class FundamentalsOptions:
    mode: str = "auto"  # auto: FMP when an API key is given
    daily_limit: int = FREE_DAILY_LIMIT
    rate_per_min: float = parse_rate("60/min")
    base_url: str = DEFAULT_BASE_URL
    cooldown_s: float = 900.0
    key: str | None = None  # FMP_API_KEY, read at the edge (flows/config.py)


def api_key(opts: FundamentalsOptions) -> str | None:
    """The key to use, None when the phase is off.

    Raises:
        BadInput: ``--fundamentals fmp`` without ``FMP_API_KEY``.
    """
    key = opts.key
    if opts.mode == "none":
        return None
    if opts.mode == "fmp" and key is None:
        raise BadInput("--fundamentals fmp needs the FMP_API_KEY environment variable")
    return key


def _client(opts: FundamentalsOptions, key: str, dsn: str, cache_dir: Path, *, timeout: float, max_retries: int,
            retry_wait: float) -> FmpClient:
    budget = RateBudget(dsn, BUDGET_NAME, per_min=opts.rate_per_min, cooldown_s=opts.cooldown_s, daily_cap=opts.daily_limit)
    return FmpClient(key, cache_dir, budget=budget, base_url=opts.base_url, timeout=timeout, max_retries=max_retries,
                     backoff_initial=retry_wait)


def run_fundamentals(opts: FundamentalsOptions, *, dsn: str, source: SourceSettings, overwrite: bool, tickers: list[str] | None,
                     dry_run: bool, command: str, say: Callable[[str], None]) -> RunEnd:
    """Fill market_cap, pe_ttm and ps_ttm of the due events; returns how the phase ended.

    ``source`` gives the cache directory, timeout and retries (FMP has a budget of its own).
    """
    key = api_key(opts)
    if key is None:
        say("Fundamentals: off (set FMP_API_KEY to fill market_cap, pe_ttm and ps_ttm); those columns stay empty")
        return RunEnd(Outcome.DONE)
    client = _client(opts, key, dsn, source.cache_dir, timeout=source.timeout, max_retries=source.max_retries,
                     retry_wait=source.retry_wait)
    try:
        if dry_run:
            conn = open_database(dsn, dry_run=True)
            try:
                work = due_tickers(conn, overwrite=overwrite, tickers=tickers)
                state = peek_budget(conn, BUDGET_NAME, opts.rate_per_min)
            finally:
                conn.rollback()
                conn.close()
            network, cached = fmp_requests_needed(client, work)
            left_today = max(0, opts.daily_limit - state.day_count)
            days = 0 if network == 0 else (1 if network <= left_today else 1 + math.ceil((network - left_today) / opts.daily_limit))
            say(f"Fundamentals (FMP): {len(work):,} tickers need {network:,} request(s) ({cached:,} more from the 24 h cache); "
                f"budget {opts.daily_limit}/day at {format_rate(min(state.rate_per_min, opts.rate_per_min))}, {left_today} left today: "
                f"{days} day(s)")
            return RunEnd(Outcome.DONE)
        with connect(dsn, autocommit=True) as conn:
            summary = value_fundamentals(conn, client, overwrite=overwrite, tickers=tickers)
        say(summary.line(client))
        # failed by type (summary.transient): those tickers are still due
        return ended(summary, failed=bool(summary.transient), say=say, stopped=summary.stopped, sleep_s=opts.cooldown_s, resume=command,
                     kept="\n(multiples written so far are kept; the rerun continues with the tickers not reached)")
    finally:
        client.close()
