"""Yahoo Finance through yfinance: the only module that imports it.

Every HTTP request yfinance makes goes through ``YahooSession``, a curl_cffi session that
(1) waits for the local spacing (``--delay``) and the shared rate budget, (2) counts requests,
(3) records each symbol's last HTTP status so failures can be classified even where yfinance
hides them, and (4) after a 429 reports it to the shared budget (which cools down every process) and refuses every further
request locally, so a rate limit stops the run at once.
Foreign errors become ours here: 429 → RateLimited, timeouts/5xx/garbage → TransientSourceError
(retried with tenacity), unknown symbols/empty answers → SourceError.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from curl_cffi import requests as curl_requests
from tenacity import RetryCallState, Retrying

from tasks.core.calendar import NY_TZ, next_day
from tasks.core.errors import NoData, RateLimited, SourceError, StoreError, TransientSourceError
from tasks.core.retries import retrying
from tasks.core.types import FetchRequest, FetchResult
from tasks.sources.budget import RateBudget
from tasks.sources.normalize import ImplausibleBars, normalize_history
from tasks.sources.spacing import MinIntervalGate

log = logging.getLogger("backfill.source")

_SYMBOL_PATH = re.compile(r"/(?:v8/finance/chart|v10/finance/quoteSummary|ws/fundamentals-timeseries/v1/finance/timeseries)/([^/?]+)")
_configured_dir: Path | None = None
_configure_lock = threading.Lock()


class RateLimitTripped(Exception):
    """Raised by YahooSession for any request after the source answered 429."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class YahooSession(curl_requests.Session):
    """curl_cffi session that paces, counts and classifies every request (see module doc)."""

    def __init__(self, limiter: MinIntervalGate | None = None, budget: RateBudget | None = None, **kwargs: Any) -> None:
        super().__init__(impersonate="chrome", **kwargs)
        self.limiter = limiter or MinIntervalGate(0.0)
        self.budget = budget
        self.request_count = 0
        self.tripped: RateLimited | None = None
        self.budget_error: StoreError | None = None
        self._status: dict[str, int] = {}
        self._lock = threading.Lock()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.tripped is not None:
            raise RateLimitTripped(str(self.tripped))
        self.limiter.acquire()
        if self.budget is not None:
            try:
                self.budget.acquire()
            except RateLimited as exc:  # the budget is cooling down: nobody may ask now
                self.tripped = exc
                raise RateLimitTripped(str(exc)) from exc
            except StoreError as exc:  # no budget, no request: yfinance may swallow this, so keep it
                self.budget_error = exc
                raise
        with self._lock:
            self.request_count += 1
        match = _SYMBOL_PATH.search(url)
        symbol = match.group(1) if match else None
        response = super().request(method, url, *args, **kwargs)  # type: ignore[arg-type]
        log.debug("%s %s -> %s", method, url.split("?", 1)[0], response.status_code)  # -v: each request (no query: it holds the crumb)
        if symbol is not None:
            with self._lock:
                self._status[symbol] = response.status_code
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            exact = False
            if self.budget is not None:
                try:
                    retry_after, exact = self.budget.penalize(retry_after), True
                except StoreError as exc:
                    self.budget_error = exc
            self.tripped = RateLimited(symbol or "yahoo", retry_after=retry_after, from_budget=exact)
        return response

    def last_status(self, symbol: str) -> int | None:
        with self._lock:
            return self._status.get(symbol)

    def forget(self, symbol: str) -> None:
        with self._lock:
            self._status.pop(symbol, None)


def configure_yfinance(cache_dir: Path) -> None:
    """Point yfinance's cookie/timezone caches into our cache dir and make it raise its errors.

    Called once per process before the first request; later calls with another dir reset
    yfinance's singletons (tests use one dir each).
    """
    global _configured_dir
    import yfinance as yf
    import yfinance.cache as yf_cache

    with _configure_lock:
        target = Path(cache_dir) / "yfinance"
        if _configured_dir == target:
            return
        unusable = _unwritable(target)
        # Process-wide, once: warnings.catch_warnings() is not thread-safe, so fetch threads must not use it.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=getattr(pd.errors, "Pandas4Warning", FutureWarning))
        yf.set_tz_cache_location(str(target))
        # Reset the DB handles so the new location takes effect in this process.
        for manager in ("_TzDBManager", "_CookieDBManager", "_ISINDBManager"):
            getattr(yf_cache, manager)._db = None
        for manager in ("_TzCacheManager", "_CookieCacheManager", "_ISINCacheManager"):
            cls = getattr(yf_cache, manager, None)
            if cls is not None:
                for attr in ("_tz_cache", "_Cookie_cache", "_isin_cache"):
                    if hasattr(cls, attr):
                        setattr(cls, attr, None)
        if unusable is not None:  # a full disk must cost the caches, never the downloads
            yf_cache._TzCacheManager._tz_cache = yf_cache._TzCacheDummy()
            yf_cache._CookieCacheManager._Cookie_cache = yf_cache._CookieCacheDummy()
            yf_cache._ISINCacheManager._isin_cache = yf_cache._ISINCacheDummy()
            logging.getLogger("backfill").warning(f"yfinance's cookie and timezone caches are off: {target} {unusable}")
        yf.config.debug.hide_exceptions = False
        logging.getLogger("yfinance").setLevel(logging.CRITICAL)
        _configured_dir = target


def _unwritable(folder: Path) -> str | None:
    """Why yfinance's SQLite caches could not live in ``folder`` (a full disk, no permission), or None.

    Probed with a file of a few SQLite pages: SQLite itself would fail later, mid-request, as
    "database or disk is full", which reads like a failure of the download.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-") as probe:
            probe.write(b"\0" * 65536)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return f"cannot be written ({exc.strerror or exc})"
    return None


def _forget_yfinance_responses() -> None:
    """Drop yfinance's in-process response cache, which would replay a bad answer on retry."""
    from yfinance.data import YfData

    YfData.cache_get.cache_clear()


def us_listed(symbol: str) -> bool:
    """Whether Yahoo's symbol is a US listing (no exchange suffix as in ``7203.T``, no ``=`` of a
    currency or future): New York's time zone and the NYSE's sessions and hours are its."""
    return "." not in symbol and "=" not in symbol


class YahooSource:
    """Fetches daily bars from Yahoo via yfinance, one symbol or a batch at a time.

    Args:
        cache_dir: where yfinance keeps its cookie/timezone caches (``<cache>/yfinance``).
        limiter: spacing between HTTP requests (``--delay``), on top of the budget.
        budget: the rate budget shared with every other process (None: local spacing only).
        max_retries: extra attempts for transient failures only.
        timeout: seconds per HTTP request.
        sleep: how tenacity waits between attempts (injected for tests).
        repair: yfinance's price repair on every download (``repaired`` column of the bars).
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        limiter: MinIntervalGate | None = None,
        budget: RateBudget | None = None,
        max_retries: int = 3,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        repair: bool = False,
    ) -> None:
        configure_yfinance(cache_dir)
        from yfinance.data import YfData

        self.session = YahooSession(limiter, budget)
        # yfinance keeps one process-wide YfData; start it afresh on our session.
        YfData._instances.pop(YfData, None)
        YfData(session=self.session)
        self.max_retries = max_retries
        self.timeout = timeout
        self._sleep = sleep
        self._backoff = (backoff_initial, backoff_max)
        self.repair = repair

    @property
    def request_count(self) -> int:
        return self.session.request_count

    def _prefill_timezones(self, symbols: Iterable[str]) -> None:
        """Save yfinance's ``range=1d`` timezone probe for US symbols (one request each)."""
        import yfinance.cache as yf_cache

        tz_cache = yf_cache.get_tz_cache()
        for symbol in symbols:
            if us_listed(symbol) and tz_cache.lookup(symbol) is None:
                tz_cache.store(symbol, NY_TZ)

    def _retrying(self) -> Retrying:
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning("retrying after transient error (attempt %d): %s", state.attempt_number, exc)
            _forget_yfinance_responses()

        return retrying(TransientSourceError, attempts=self.max_retries + 1, initial=self._backoff[0], most=self._backoff[1],
                        sleep=self._sleep, before_sleep=before_sleep)

    def fetch(self, request: FetchRequest) -> FetchResult:
        """Bars for one request, retrying transient failures.

        Raises:
            RateLimited: the source answered 429 (no retry).
            SourceError: unknown symbol, no data, or a transient failure that outlasted the retries.
        """
        return self._retrying()(self._fetch_once, request)

    def fetch_batch(self, requests: list[FetchRequest]) -> dict[FetchRequest, FetchResult | SourceError]:
        """Bars for several requests with one ``yf.download`` per distinct range.

        Requests that fail transiently are retried one by one; a 429 ends the batch: the
        requests not yet answered get the RateLimited error.
        """
        import yfinance as yf

        self._prefill_timezones(r.symbol for r in requests)
        out: dict[FetchRequest, FetchResult | SourceError] = {}
        by_range: dict[tuple[dt.date, dt.date], list[FetchRequest]] = {}
        for req in requests:
            by_range.setdefault((req.start, req.end), []).append(req)
        for (start, end), group in by_range.items():
            if self.session.tripped is not None:
                for req in group:
                    out[req] = self.session.tripped
                continue
            for req in group:
                self.session.forget(req.symbol)
            frame = yf.download(
                [r.symbol for r in group], start=start.isoformat(), end=next_day(end).isoformat(),
                interval="1d", auto_adjust=False, actions=True, group_by="ticker", threads=False,
                progress=False, timeout=self.timeout, multi_level_index=True, session=self.session, repair=self.repair,
            )
            if self.session.budget_error is not None:
                raise self.session.budget_error
            for req in group:
                sub = None
                if frame is not None and isinstance(frame.columns, pd.MultiIndex) and req.symbol in frame.columns.get_level_values(0):
                    sub = frame[req.symbol].dropna(how="all", subset=[c for c in ("Open", "High", "Low",
                                                                                  "Close") if c in frame[req.symbol].columns])
                try:
                    if sub is None or sub.empty:
                        raise self._classify(req.symbol, None)
                    out[req] = self._to_result(req, sub)
                except TransientSourceError:
                    _forget_yfinance_responses()
                    try:
                        out[req] = self.fetch(req)
                    except SourceError as exc:
                        out[req] = exc
                except SourceError as exc:
                    out[req] = exc
        return out

    def _fetch_once(self, request: FetchRequest) -> FetchResult:
        def history(ticker: Any) -> Any:
            if us_listed(request.symbol):
                # US listings trade in New York: tell yfinance so it skips its timezone lookup
                # (an SQLite query per ticker, shared by every thread and process) and probe request.
                ticker._tz = NY_TZ
            return ticker.history(
                start=request.start.isoformat(), end=next_day(request.end).isoformat(), interval="1d",
                auto_adjust=False, actions=True, repair=self.repair, timeout=self.timeout,
            )

        frame = self._ask(request.symbol, history)
        if frame is None or frame.empty:
            raise self._classify(request.symbol, None)
        return self._to_result(request, frame)

    def fetch_intraday(self, symbol: str, interval: str, start: dt.datetime, end: dt.datetime, *,
                       prepost: bool) -> tuple[pd.DataFrame, list[tuple[dt.date, float]]]:
        """Intraday bars in [start, end) (``bar_start`` UTC, ``open high low close volume``), as
        Yahoo serves them (``prepost``: with pre- and post-market bars), retrying transient failures;
        and the splits the answer names (ex-date, ratio).

        Raises:
            RateLimited: the source answered 429 (no retry).
            NoData: nothing in the range (unknown symbol, or no trade in it).
            SourceError: anything else that outlasted the retries.
        """
        return self._retrying()(self._intraday_once, symbol, interval, start, end, prepost)

    def _intraday_once(self, symbol: str, interval: str, start: dt.datetime, end: dt.datetime,
                       prepost: bool) -> tuple[pd.DataFrame, list[tuple[dt.date, float]]]:
        def history(ticker: Any) -> Any:
            if us_listed(symbol):
                ticker._tz = NY_TZ  # skip yfinance's timezone probe, as for daily bars
            return ticker.history(start=int(start.timestamp()), end=int(end.timestamp()), interval=interval, prepost=prepost,
                                  auto_adjust=False, actions=True, repair=self.repair, timeout=self.timeout)

        frame = self._ask(symbol, history)
        if frame is None or frame.empty:
            raise self._classify(symbol, None)
        try:
            out = pd.DataFrame({"bar_start": pd.DatetimeIndex(frame.index).tz_convert("UTC"),
                                **{c.lower(): frame[c].to_numpy() for c in ("Open", "High", "Low", "Close", "Volume")}})
            if "Repaired?" in frame.columns:
                out["repaired"] = frame["Repaired?"].to_numpy(dtype=bool).astype("int64")
            # A split, on the first bar of its session (kept before rows without prices are dropped).
            out["split"] = pd.to_numeric(frame["Stock Splits"], errors="coerce").fillna(0.0).to_numpy() \
                if "Stock Splits" in frame.columns else 0.0
        except (KeyError, ValueError, TypeError) as exc:
            raise TransientSourceError(symbol, f"malformed data from source: {exc}") from exc
        marked = out[out["split"] > 0]
        splits = [(pd.Timestamp(t).tz_convert(NY_TZ).date(), float(r)) for t, r in zip(marked["bar_start"], marked["split"], strict=True)]
        out = out.drop(columns="split")
        out = out.dropna(subset=["open", "high", "low", "close"], how="all")
        if out.empty:
            raise NoData(symbol, "no data for the requested sessions")
        return out.reset_index(drop=True), splits

    def fund_holdings(self, symbol: str) -> pd.DataFrame:
        """A fund's top holdings (``holding, name, weight``; weight as a fraction), retrying transient failures.

        Raises:
            RateLimited: the source answered 429.
            SourceError: not a fund, unknown symbol, or transient failures beyond the retries.
        """
        return self._retrying()(self._holdings_once, symbol)

    def shares_history(self, symbol: str, start: dt.date, end: dt.date) -> list[tuple[dt.date, float]]:
        """Shares outstanding as Yahoo reported them between ``start`` and ``end`` (date, shares), oldest first.

        Raises:
            RateLimited, SourceError: as for ``fund_holdings``; SourceError also when Yahoo has no figure.
        """
        return list(self._retrying()(self._shares_once, symbol, start, end))

    def _ask(self, symbol: str, what: Callable[[Any], Any]) -> Any:
        """One yfinance call for ``symbol`` with our error translation."""
        import yfinance as yf

        if self.session.tripped is not None:
            raise self.session.tripped
        self.session.forget(symbol)
        try:
            answer = what(yf.Ticker(symbol, session=self.session))
        except StoreError:
            raise
        except Exception as exc:
            if self.session.budget_error is not None:
                raise self.session.budget_error from exc
            raise self._classify(symbol, exc) from exc
        if self.session.budget_error is not None:
            raise self.session.budget_error
        return answer

    def _holdings_once(self, symbol: str) -> pd.DataFrame:
        top = self._ask(symbol, lambda t: t.funds_data.top_holdings)
        if top is None or top.empty:
            raise SourceError(symbol, "no fund holdings")
        try:
            frame = pd.DataFrame({"holding": [str(h).upper() for h in top.index], "name": top["Name"].astype(str).to_numpy(),
                                  "weight": top["Holding Percent"].astype(float).to_numpy()})
        except (KeyError, ValueError, TypeError) as exc:
            raise TransientSourceError(symbol, f"malformed fund data: {exc}") from exc
        return frame

    def _shares_once(self, symbol: str, start: dt.date, end: dt.date) -> list[tuple[dt.date, float]]:
        def shares(ticker: Any) -> Any:
            if us_listed(symbol):
                ticker._tz = NY_TZ  # skip yfinance's timezone probe, as for history
            return ticker.get_shares_full(start=start.isoformat(), end=next_day(end).isoformat())

        series = self._ask(symbol, shares)
        if series is None or len(series) == 0:
            raise SourceError(symbol, "no shares-outstanding history")
        by_day: dict[dt.date, float] = {}
        try:
            for stamp, value in series.items():
                count = float(value)
                if not (count > 0 and count < 1e13):  # NaN, zero, negative or absurd: not a share count
                    continue
                by_day[pd.Timestamp(stamp).date()] = count  # later figures of a day win
        except (TypeError, ValueError) as exc:
            raise TransientSourceError(symbol, f"malformed shares data: {exc}") from exc
        if not by_day:
            raise SourceError(symbol, "no plausible shares-outstanding figure")
        return sorted(by_day.items())

    def _to_result(self, request: FetchRequest, frame: pd.DataFrame) -> FetchResult:
        try:
            bars, actions = normalize_history(request.symbol, frame, within=(request.start, request.end))
        except ImplausibleBars as exc:  # a failed ticker, not retried: the source would say the same again
            raise SourceError(request.symbol, f"implausible data from source: {exc}") from exc
        except (KeyError, ValueError, TypeError) as exc:
            raise TransientSourceError(request.symbol, f"malformed data from source: {exc}") from exc
        if bars.empty:
            raise NoData(request.symbol, "no data for the requested sessions")
        return FetchResult(request, bars, from_cache=False, actions=actions)

    def _classify(self, symbol: str, exc: BaseException | None) -> SourceError:
        from yfinance.exceptions import YFRateLimitError

        if self.session.tripped is not None or isinstance(exc, (YFRateLimitError, RateLimitTripped)):
            tripped = self.session.tripped
            if tripped is None:
                return RateLimited(symbol)
            return RateLimited(symbol, tripped.reason, retry_after=tripped.retry_after, from_budget=tripped.from_budget,
                               refused=tripped.refused)
        status = self.session.last_status(symbol)
        if status is not None and status >= 500:
            return TransientSourceError(symbol, f"HTTP {status} from source")
        if status == 404:
            return NoData(symbol, "no data (unknown or delisted symbol)")
        if exc is None:
            if status is not None and status >= 400:
                return SourceError(symbol, f"HTTP {status} from source")
            return NoData(symbol, "no data")
        if isinstance(exc, (OSError, TimeoutError, curl_requests.exceptions.RequestException)):
            return TransientSourceError(symbol, f"network error: {type(exc).__name__}")
        if isinstance(exc, ValueError):  # JSON decode errors: truncated or garbage bodies
            return TransientSourceError(symbol, "malformed response from source")
        name = type(exc).__name__
        if name in {"YFPricesMissingError", "YFTzMissingError", "YFInvalidPeriodError"}:
            return NoData(symbol, "no data (unknown or delisted symbol)")
        if status is not None and status >= 400:
            return SourceError(symbol, f"HTTP {status} from source")
        return TransientSourceError(symbol, f"{name}: {str(exc)[:200]}")
