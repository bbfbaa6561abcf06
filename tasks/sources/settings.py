"""How a run talks to Yahoo: one settings object, built once at the edge, with the builders of the
source, the shared budget and the download cache. Every flow uses it; picklable, so worker
processes build their own source from it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tasks.sources.budget import DEFAULT_DAILY_QUOTA, DEFAULT_NAME, DEFAULT_RATE, RateBudget, parse_rate, rate_param
from tasks.sources.cache import DownloadCache
from tasks.sources.spacing import MinIntervalGate
from tasks.sources.yahoo import YahooSource


@dataclass(frozen=True)
class SourceSettings:
    """Fetch, budget, retry and cache settings of one run.

    Attributes:
        cache_dir: the download cache (and yfinance's own cookie/timezone caches).
        refresh: ignore the download cache (the database is still checked first).
        delay: minimum seconds between two requests of this run (on top of the shared budget).
        rate_per_min: the shared budget's rate; lowered after a 429 and learned across runs.
        rate_budget: the shared budget's name; runs with the same name share it.
        daily_quota: requests the budget grants per UTC day (None: no quota).
        rate_limit_sleep: first cool-down after a 429, seconds (doubles while a block lasts).
        max_retries: retries for transient failures only (timeouts, 5xx, resets), never a 429.
        retry_wait: first backoff before a retry, seconds (doubles, with jitter).
        timeout: seconds per HTTP request.
        repair: downloads go through yfinance's price repair; the bars it changed are marked.
    """

    cache_dir: Path = Path(".cache")
    refresh: bool = False
    delay: float = 5.0
    rate_per_min: float = parse_rate(DEFAULT_RATE)
    rate_budget: str = DEFAULT_NAME
    daily_quota: int | None = DEFAULT_DAILY_QUOTA
    rate_limit_sleep: float = 900.0
    max_retries: int = 3
    retry_wait: float = 1.0
    timeout: float = 10.0
    repair: bool = False  # yfinance's price repair on every download (its extra requests paced like the rest)

    def spacing_s(self) -> float:
        """Least seconds between two of this run's requests: its own ``delay`` or the budget's rate,
        whichever is slower (what a progress line's ETA counts per request left)."""
        return max(self.delay, 60.0 / self.rate_per_min)

    def budget(self, dsn: str) -> RateBudget:
        """The shared request budget every Yahoo request of this run takes a slot from."""
        return RateBudget(dsn, self.rate_budget, per_min=self.rate_per_min, cooldown_s=self.rate_limit_sleep, daily_cap=self.daily_quota)

    def source(self, budget: RateBudget | None, *, delay: float | None = None) -> YahooSource:
        """A Yahoo source paced by ``delay`` (default: ``self.delay``) and the shared ``budget``."""
        return YahooSource(self.cache_dir, limiter=MinIntervalGate(self.delay if delay is None else delay), budget=budget,
                           max_retries=self.max_retries, timeout=self.timeout, backoff_initial=self.retry_wait, repair=self.repair)

    def cache(self) -> DownloadCache:
        """The download cache; repaired downloads in one of their own (``repaired/``), so a run without
        ``--repair`` never takes a repaired answer for Yahoo's, nor the other way round."""
        return DownloadCache(self.cache_dir / "repaired" if self.repair else self.cache_dir)

    def spread_over(self, processes: int) -> SourceSettings:
        """The settings for one of ``processes`` workers: each spaces its requests ``processes`` times
        wider, so together they keep to ``delay``."""
        return replace(self, delay=self.delay * processes)

    def rate_text(self) -> str:
        """The rate as a flow parameter (``"300/min"``)."""
        return rate_param(self.rate_per_min)
