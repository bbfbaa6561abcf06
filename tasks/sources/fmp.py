"""Financial Modeling Prep (FMP) fundamentals over its current ("stable") REST API.

    GET {base}/income-statement?symbol=AAPL&period=quarter&limit=N&apikey=KEY
    GET {base}/historical-market-capitalization?symbol=AAPL&from=YYYY-MM-DD&to=YYYY-MM-DD&apikey=KEY

Requests go through a requests-cache session (SQLite in the cache dir, 24 h): the API key is an
ignored parameter, so it is neither part of a cache key nor stored. A request is answered from
that cache when it can be (no budget spent); otherwise it first takes a slot from the ``fmp``
budget (its own rate and daily quota in the shared rate budget). Transient failures (timeouts,
5xx, garbled bodies) are retried with tenacity; a 429 cools the budget down and stops. No error
message ever carries the URL (it holds the key).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.errors import RateLimited, SourceError, TransientSourceError
from tasks.core.retries import retrying
from tasks.sources.budget import RateBudget
from tasks.sources.yahoo import parse_retry_after

log = logging.getLogger("backfill.fmp")

DEFAULT_BASE_URL = "https://financialmodelingprep.com/stable"
BUDGET_NAME = "fmp"
FREE_DAILY_LIMIT = 250
CACHE_TTL = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Quarter:
    """One quarterly income statement as filed."""

    period_end: dt.date
    filed: dt.date
    revenue: float | None
    eps_diluted: float | None


class FmpClient:
    """Reads fundamentals for one ticker at a time (see module doc).

    Args:
        api_key: the FMP key (never logged, never cached).
        cache_dir: where ``fmp_http_cache_json.sqlite`` lives (responses stored as JSON: never unpickled).
        budget: the ``fmp`` budget (None: no pacing, for tests of the parsing only).
        base_url: API root (tests point it at a fake on loopback).
    """

    def __init__(self, api_key: str, cache_dir: Path, *, budget: RateBudget | None, base_url: str = DEFAULT_BASE_URL,
                 timeout: float = 10.0, max_retries: int = 3, backoff_initial: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._key = api_key
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.timeout = timeout
        self.max_retries = max_retries
        self._backoff = backoff_initial
        self._sleep = sleep
        import requests_cache  # imported here: runs without FMP do not pay for it at start-up

        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.session = requests_cache.CachedSession(
            str(Path(cache_dir) / "fmp_http_cache_json"), backend="sqlite", serializer="json",  # never pickle from disk
            expire_after=CACHE_TTL, allowable_codes=(200,), ignored_parameters=["apikey"], match_headers=False, stale_if_error=False,
        )
        self.network_requests = 0
        self.cached_requests = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    # -- requests --------------------------------------------------------------------------
    def _get(self, path: str, params: dict[str, Any], symbol: str) -> Any:
        """GET ``path`` as JSON: from the cache if fresh, else one budgeted request (retried if transient)."""
        url = f"{self.base_url}/{path}"
        full = {**params, "apikey": self._key}
        cached = self.session.get(url, params=full, only_if_cached=True, timeout=self.timeout)
        if cached.status_code == 200 and getattr(cached, "from_cache", False):
            try:
                data = self._json(cached, symbol, path)
            except TransientSourceError:
                pass  # a garbled answer was cached: ask again (the fresh answer replaces it)
            else:
                with self._lock:
                    self.cached_requests += 1
                return data
        again = retrying(TransientSourceError, attempts=self.max_retries + 1, initial=self._backoff, most=30, sleep=self._sleep)
        return again(self._fetch, url, full, symbol, path)

    def _fetch(self, url: str, params: dict[str, Any], symbol: str, path: str) -> Any:
        import requests

        if self.budget is not None:
            self.budget.acquire()
        with self._lock:
            self.network_requests += 1
        try:
            response = self.session.get(url, params=params, timeout=self.timeout, force_refresh=True)
        except requests.RequestException as exc:  # the message may hold the URL (and key): never pass it on
            raise TransientSourceError(symbol, f"FMP {path}: network error ({type(exc).__name__})") from None
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if self.budget is not None:
                left = self.budget.penalize(retry_after)
                raise RateLimited(symbol, "FMP rate limit (HTTP 429)", retry_after=left, from_budget=True)
            raise RateLimited(symbol, "FMP rate limit (HTTP 429)", retry_after=retry_after)
        if response.status_code in (401, 403):
            raise SourceError(symbol, f"FMP refused the API key or plan (HTTP {response.status_code})")
        if response.status_code >= 500:
            raise TransientSourceError(symbol, f"FMP {path}: HTTP {response.status_code}")
        if response.status_code != 200:
            raise SourceError(symbol, f"FMP {path}: HTTP {response.status_code}")
        return self._json(response, symbol, path)

    @staticmethod
    def _json(response: Any, symbol: str, path: str) -> Any:
        try:
            data = response.json()
        except ValueError:
            raise TransientSourceError(symbol, f"FMP {path}: malformed JSON") from None
        if isinstance(data, dict) and ("Error Message" in data or "error" in data):
            raise SourceError(symbol, f"FMP {path}: {str(data.get('Error Message') or data.get('error'))[:200]}")
        if not isinstance(data, list):
            raise TransientSourceError(symbol, f"FMP {path}: unexpected answer")
        return data

    # -- statements ------------------------------------------------------------------------
    @staticmethod
    def quarters_request(symbol: str, since: dt.date) -> tuple[str, dict[str, Any]]:
        """Path and parameters that ask for the quarters from ``since`` to now (newest first, ``limit`` of them)."""
        limit = min(400, max(8, (dt.date.today() - since).days // 91 + 8))
        return "income-statement", {"symbol": symbol, "period": "quarter", "limit": limit}

    @staticmethod
    def caps_request(symbol: str, start: dt.date, end: dt.date) -> tuple[str, dict[str, Any]]:
        return "historical-market-capitalization", {"symbol": symbol, "from": start.isoformat(), "to": end.isoformat()}

    def quarters(self, symbol: str, since: dt.date) -> list[Quarter]:
        """Quarterly income statements whose period ended on or after ``since`` (and enough before it)."""
        rows = self._get(*self.quarters_request(symbol, since), symbol)
        out = []
        for row in rows:
            try:
                filed = row.get("filingDate") or row.get("fillingDate") or row.get("acceptedDate")
                out.append(Quarter(
                    period_end=dt.date.fromisoformat(str(row["date"])[:10]), filed=dt.date.fromisoformat(str(filed)[:10]),
                    revenue=_number(row.get("revenue")), eps_diluted=_number(row.get("epsDiluted", row.get("epsdiluted"))),
                ))
            except (KeyError, TypeError, ValueError):
                continue  # a row without dates cannot be placed in time: skip it
        return sorted(out, key=lambda q: q.period_end)

    def market_caps(self, symbol: str, start: dt.date, end: dt.date) -> dict[dt.date, float]:
        """Daily market capitalization between two dates."""
        rows = self._get(*self.caps_request(symbol, start, end), symbol)
        out: dict[dt.date, float] = {}
        for row in rows:
            cap = _number(row.get("marketCap"))
            try:
                day = dt.date.fromisoformat(str(row["date"])[:10])
            except (KeyError, ValueError):
                continue
            if cap is not None and cap > 0:
                out[day] = cap
        return out

    def is_cached(self, path: str, params: dict[str, Any]) -> bool:
        """Whether a request would be answered from the cache (dry runs count what they would spend)."""
        response = self.session.get(f"{self.base_url}/{path}", params={**params, "apikey": self._key}, only_if_cached=True)
        return response.status_code == 200 and bool(getattr(response, "from_cache", False))


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None
