"""A fake Yahoo Finance on loopback, reached by the real yfinance as an HTTPS proxy.

The process under test gets ``HTTPS_PROXY=http://127.0.0.1:PORT`` and trusts a throwaway CA
(``CURL_CA_BUNDLE``/``REQUESTS_CA_BUNDLE``). The fake accepts ``CONNECT``, terminates TLS with a
``*.yahoo.com`` certificate from that CA, and serves the endpoints yfinance calls for daily
history: the cookie (fc.yahoo.com), the crumb, and ``/v8/finance/chart/{SYMBOL}``; for fund holdings
``/v10/finance/quoteSummary/{SYMBOL}`` and ``/v7/finance/quote``; for shares-outstanding history the
fundamentals timeseries (``shares_out``). Through the same tunnel it is also ``www.ssga.com``, serving
State Street's daily holdings spreadsheets in their real layout (``holdings_file``).

Prices are a pure function of (symbol, date) — ``bar_for`` — so tests compute what should be
stored independently of the code under test. Knobs script failures: unknown symbols, 429s
(after N chart requests, or all, or until a time), a share of 5xx answers, revised bars, dividends
and splits restating adj_close, a list of statuses to answer per symbol (5xx, garbage,
truncated JSON, HTML), latency, and hanging responses. Every request is logged.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import random
import shutil
import ssl
import tempfile
import threading
import time
import weakref
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import exchange_calendars as xcals
import pandas as pd
import trustme

NY = "America/New_York"
SECTOR_FUNDS = ("XLK", "XLV", "XLF", "XLY", "XLC", "XLI", "XLP", "XLE", "XLU", "XLRE", "XLB")
_CAL = xcals.get_calendar("XNYS", start="1990-01-01")


def bar_for(symbol: str, day: dt.date) -> dict[str, float | int]:
    """The bar the fake serves for ``symbol`` on session ``day`` (deterministic)."""
    seed = zlib.crc32(symbol.encode())
    base = 20 + seed % 480
    n = day.toordinal()
    wave = ((n * 7919 + seed) % 1000) / 1000.0  # 0..1
    close = round(base * (1 + 0.05 * (wave - 0.5)) + (n % 97) * 0.01, 4)
    open_ = round(close * (1 + 0.004 * (((n + seed) % 11) - 5) / 5), 4)
    high = round(max(open_, close) * 1.006, 4)
    low = round(min(open_, close) * 0.994, 4)
    adj = round(close * (1 - (seed % 7) / 100), 4)
    volume = 1_000_000 + (seed % 1000) * 1000 + (n % 500) * 37
    return {"open": open_, "high": high, "low": low, "close": close, "adj_close": adj, "volume": volume}


HOLDING_WEIGHTS = (0.21, 0.17, 0.12, 0.08, 0.05)


def holdings_for(etf: str) -> list[tuple[str, str, float]]:
    """The top holdings the fake reports for a fund: (symbol, name, weight), five of them."""
    return [(f"{etf}S{i + 1}", f"{etf} Stock {i + 1} Inc.", w) for i, w in enumerate(HOLDING_WEIGHTS)]


def market_cap_for(symbol: str) -> int:
    """The market cap the fake reports for ``symbol`` (deterministic, 10 bn .. 1 tn)."""
    return (1 + zlib.crc32(symbol.encode()) % 100) * 10_000_000_000


def shares_observations(symbol: str, first: dt.date, last: dt.date) -> list[tuple[dt.date, int]]:
    """The shares-outstanding figures the fake reports for ``symbol``: one on the 1st of each month,
    growing 1% a month from a per-symbol base (deterministic)."""
    base = (1 + zlib.crc32(symbol.encode()) % 50) * 100_000_000
    out = []
    day = dt.date(first.year, first.month, 1)
    while day <= last:
        if day >= first:
            months = (day.year - 2000) * 12 + day.month
            out.append((day, int(base * (1 + 0.01 * (months % 24)))))
        day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
    return out


def shares_known_on(symbol: str, day: dt.date) -> int:
    """The latest figure on or before ``day`` (what a point-in-time weight must use)."""
    return shares_observations(symbol, dt.date(day.year - 2, 1, 1), day)[-1][1]


def constituents_for(fund: str) -> list[tuple[str, str, float, int]]:
    """The stocks in a fund's sponsor file: (symbol as the sponsor spells it, name, weight %, shares held).

    Six per fund; XLF holds BRK.B (Yahoo: BRK-B); XLK and XLC both hold GOOGL."""
    weights = (24.5, 18.25, 15.0, 11.5, 9.75, 7.0)
    names = [f"{fund}{chr(65 + i)}" for i in range(6)]  # letters only, as US stock symbols are
    if fund == "XLF":
        names[1] = "BRK.B"
    if fund in ("XLK", "XLC"):
        names[5] = "GOOGL"
    return [(n, f"{n} CORP", w, 1_000_000 * (i + 1) + zlib.crc32(fund.encode()) % 1000) for i, (n, w) in enumerate(zip(names, weights,
                                                                                                                   strict=True))]


def holdings_file(fund: str, as_of: dt.date, stocks: list[tuple[str, str, float, int]] | None = None) -> bytes:
    """A holdings spreadsheet in State Street's layout: label rows, header, stocks, cash, a money-market
    fund and a futures line (sector "-"), a blank row and disclaimers."""
    import io

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "holdings"
    sheet.append(["Fund Name:", f"The {fund} Select Sector SPDR\u00ae Fund"])
    sheet.append(["Ticker Symbol:", fund])
    sheet.append(["Holdings:", f"As of {as_of.strftime('%d-%b-%Y')}"])
    sheet.append([])
    sheet.append(["Name", "Ticker", "Identifier", "SEDOL", "Weight", "Sector", "Shares Held", "Local Currency"])
    for i, (symbol, name, weight, shares) in enumerate(stocks if stocks is not None else constituents_for(fund)):
        sheet.append([name, symbol, f"{100000000 + i}", f"{2000000 + i}", weight, "Information Technology", shares, "USD"])
    sheet.append(["SSI US GOV MONEY MARKET CLASS", "-", "857492888", "-", 0.12, "-", 5_123_456, "USD"])
    sheet.append(["US DOLLAR", "CASH_USD", "CASH_USD", "-", 0.03, "-", 1_234_567, "USD"])
    sheet.append(["S&P500 EMINI FUT DEC25", "ESZ5", "ESZ5 Index", "-", 0.0, "-", 12, "USD"])
    sheet.append([])
    sheet.append(["Past performance is not a guarantee of future results."])
    sheet.append(["Holdings are subject to change."])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def sessions_in(period1: int, period2: int) -> list[dt.date]:
    """NYSE sessions whose 09:30 New York bar timestamp lies in [period1, period2)."""
    start = pd.Timestamp(period1, unit="s", tz="UTC").tz_convert(NY).normalize().tz_localize(None)
    end = pd.Timestamp(period2, unit="s", tz="UTC").tz_convert(NY).normalize().tz_localize(None)
    lo = max(start, _CAL.first_session)
    hi = min(end, _CAL.last_session)
    if hi < lo:
        return []
    days = [s.date() for s in _CAL.sessions_in_range(lo, hi)]
    return [d for d in days if period1 <= _stamp(d) < period2]


INTRADAY_MINUTES = {"1m": 1, "2m": 2, "5m": 5, "15m": 15, "30m": 30, "60m": 60, "1h": 60, "90m": 90}
# Yahoo's windows: how many days back an interval is served, and the most days one request may span.
LOOKBACK_DAYS = {1: 30, 60: 730}  # others: 60
MAX_SPAN_DAYS = {1: 8}


def intraday_bar_for(symbol: str, start: int, minutes: int) -> dict[str, float | int]:
    """The bar the fake serves for ``symbol`` starting at ``start`` (epoch seconds), ``minutes`` long."""
    seed = zlib.crc32(symbol.encode())
    base = 20 + seed % 480
    k = start // 60
    wave = ((k * 7919 + seed * minutes) % 1000) / 1000.0
    open_ = round(base * (1 + 0.02 * (wave - 0.5)), 4)
    close = round(open_ * (1 + 0.002 * (((k + seed) % 9) - 4) / 4), 4)
    high = round(max(open_, close) * 1.001, 4)
    low = round(min(open_, close) * 0.999, 4)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": 1000 + (seed + k) % 5000 * minutes}


def session_periods(period1: int, period2: int) -> list[tuple[int, int, int, int]]:
    """(pre start, open, close, post end) in epoch seconds of the NYSE sessions whose local date lies
    in [period1, period2]: pre-market from 04:00 New York, post-market 4 hours after the close."""
    first = pd.Timestamp(period1, unit="s", tz="UTC").tz_convert(NY).normalize().tz_localize(None)
    last = pd.Timestamp(period2, unit="s", tz="UTC").tz_convert(NY).normalize().tz_localize(None)
    out = []
    for day in _CAL.sessions_in_range(max(first, _CAL.first_session), min(last, _CAL.last_session)):
        open_, close = _CAL.session_open(day), _CAL.session_close(day)
        pre = pd.Timestamp(dt.datetime(day.year, day.month, day.day, 4, 0), tz=NY)
        out.append((int(pre.timestamp()), int(open_.timestamp()), int(close.timestamp()), int(close.timestamp()) + 4 * 3600))
    return out


def _open_of(day: dt.date) -> int:
    return int(_CAL.session_open(pd.Timestamp(day)).timestamp())


def _period(start: int, end: int) -> dict[str, Any]:
    offset = int(pd.Timestamp(start, unit="s", tz="UTC").tz_convert(NY).utcoffset().total_seconds())
    return {"timezone": "EDT" if offset == -14400 else "EST", "start": start, "end": end, "gmtoffset": offset}


def _cookie_expiry() -> str:
    from email.utils import format_datetime

    return format_datetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=365), usegmt=True)


def _stamp(day: dt.date) -> int:
    return int(pd.Timestamp(dt.datetime(day.year, day.month, day.day, 9, 30), tz=NY).timestamp())


@dataclass
class Logged:
    at: float
    host: str
    path: str
    query: dict[str, str]
    status: int

    @property
    def symbol(self) -> str | None:
        return self.path.rsplit("/", 1)[-1] if self.path.startswith("/v8/finance/chart/") else None


@dataclass
class FakeYahoo:
    """The fake server; use as a context manager. See the module doc for the knobs."""

    latency: float = 0.0
    unknown: set[str] = field(default_factory=set)
    scripted: dict[str, list[Any]] = field(default_factory=dict)  # symbol → statuses/"garbage"/"truncated"/"html"/"empty"/"hang"
    rate_limit_after: int | None = None  # chart requests served before every request gets 429
    retry_after: int | None = None
    dividends: dict[str, dict[dt.date, float]] = field(default_factory=dict)
    splits: dict[str, dict[dt.date, tuple[int, int]]] = field(default_factory=dict)
    hang_seconds: float = 30.0
    error_rate: float = 0.0  # this share of chart requests answered 502 (seeded: the same run gives the same answers)
    blocked_until: float | None = None  # wall-clock time until which every request gets 429 (a block)
    max_per_second: float | None = None  # a request that makes more than this many in the last second (any host) gets 429
    revisions: dict[tuple[str, dt.date], float] = field(default_factory=dict)  # (symbol, day) → factor on that bar's prices
    intraday_revisions: dict[tuple[str, int], float] = field(default_factory=dict)  # (symbol, bar start) → factor on its prices
    holdings: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)  # fund → holdings (default: holdings_for)
    sponsor_as_of: dt.date = dt.date(2025, 6, 30)  # the date the sponsor files say
    sponsor_files: dict[str, Any] = field(default_factory=dict)  # fund → bytes to serve, or an HTTP status
    no_shares: set[str] = field(default_factory=set)  # symbols without shares-outstanding history
    log: list[Logged] = field(default_factory=list)
    in_flight: set[str] = field(default_factory=set)  # symbols whose chart request is being answered now
    gate: threading.Event | None = None  # while it is an Event not yet set, chart answers wait for it (a test holds the run)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._chart_served = 0
        self._answering = 0
        self.peak_answering = 0  # most requests in their latency at once (with ``latency``): the client's concurrency
        self._recent: collections.deque[float] = collections.deque()  # arrival times within the last second
        self._random = random.Random(20251122)
        self._dir = Path(tempfile.mkdtemp(prefix="fake-yahoo-"))
        weakref.finalize(self, shutil.rmtree, self._dir, True)  # its CA file: gone with the fake
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("*.yahoo.com", "yahoo.com", "fc.yahoo.com", "query1.finance.yahoo.com", "query2.finance.yahoo.com",
                                  "www.ssga.com")
        self.ca_path = self._dir / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self._tls)
        self._tls.set_alpn_protocols(["http/1.1"])
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> FakeYahoo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Proxy(_ProxyHandler):
            owner = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-yahoo", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def proxy_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def env(self) -> dict[str, str]:
        """Environment variables that route a process's yfinance to this fake."""
        return {
            "HTTPS_PROXY": self.proxy_url, "https_proxy": self.proxy_url,
            "CURL_CA_BUNDLE": str(self.ca_path), "REQUESTS_CA_BUNDLE": str(self.ca_path),
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        }

    # -- inspection ------------------------------------------------------------------------
    def chart_requests(self, symbol: str | None = None) -> list[Logged]:
        with self._lock:
            return [e for e in self.log if e.symbol is not None and (symbol is None or e.symbol == symbol)]

    def reset_log(self) -> None:
        with self._lock:
            self.log.clear()

    def bar(self, symbol: str, day: dt.date) -> dict[str, float | int]:
        """The bar served now for ``symbol`` on ``day``: ``bar_for`` with any revision applied, and
        ``adj_close`` restated for every dividend and split after ``day`` (as Yahoo does)."""
        bar = dict(bar_for(symbol, day))
        factor = self.revisions.get((symbol, day))
        if factor is not None:
            for key in ("open", "high", "low", "close", "adj_close"):
                bar[key] = round(float(bar[key]) * factor, 4)
        adjust = 1.0
        for ex_date, amount in self.dividends.get(symbol, {}).items():
            if ex_date > day:
                adjust *= 1 - amount / float(bar_for(symbol, ex_date)["close"])
        for ex_date, (num, den) in self.splits.get(symbol, {}).items():
            if ex_date > day:
                adjust *= den / num
        bar["adj_close"] = round(float(bar["adj_close"]) * adjust, 4)
        return bar

    # -- answers ---------------------------------------------------------------------------
    def respond(self, host: str, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.latency:
            with self._lock:
                self._answering += 1
                self.peak_answering = max(self.peak_answering, self._answering)
            try:
                time.sleep(self.latency)
            finally:
                with self._lock:
                    self._answering -= 1
        if self.blocked_until is not None and time.time() < self.blocked_until:
            return self._too_many()
        if self.max_per_second is not None and self._over_the_rate():
            return self._too_many()
        if path.startswith("/v8/finance/chart/"):
            return self._chart(path.rsplit("/", 1)[-1], query)
        if host == "www.ssga.com":
            return self._sponsor_file(path)
        with self._lock:
            limited = self.rate_limit_after is not None and self._chart_served >= self.rate_limit_after
        if limited:
            return self._too_many()
        if path.startswith("/v10/finance/quoteSummary/"):
            return self._quote_summary(path.rsplit("/", 1)[-1], query)
        if path.startswith("/v7/finance/quote"):
            symbol = query.get("symbols", "")
            if symbol in self.unknown:
                return 200, {"Content-Type": "application/json"}, json.dumps({"quoteResponse": {"result": [], "error": None}}).encode()
            quote = {"symbol": symbol, "marketCap": market_cap_for(symbol), "quoteType": "EQUITY"}
            return 200, {"Content-Type": "application/json"}, json.dumps({"quoteResponse": {"result": [quote], "error": None}}).encode()
        if path.startswith("/ws/fundamentals-timeseries/"):
            return self._shares(path.rsplit("/", 1)[-1], query)
        if host == "fc.yahoo.com":
            cookie = f"A3=d=fake&S=fake; Expires={_cookie_expiry()}; Max-Age=31557600; Domain=.yahoo.com; Path=/; Secure; SameSite=None"
            return 404, {"Set-Cookie": cookie, "Content-Type": "text/html"}, b"<html>404</html>"
        if path == "/v1/test/getcrumb":
            return 200, {"Content-Type": "text/plain"}, b"fakecrumb"
        return 404, {"Content-Type": "text/html"}, b"<html><body>Not here</body></html>"

    def _sponsor_file(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """State Street's daily holdings file for ``.../holdings-daily-us-en-{fund}.xlsx``."""
        name = path.rsplit("/", 1)[-1]
        if not (path.startswith("/us/en/intermediary/library-content/products/fund-data/etfs/us/holdings-daily-us-en-")
                and name.endswith(".xlsx")):
            return 404, {"Content-Type": "text/html"}, b"<html>Page not found</html>"
        fund = name.removeprefix("holdings-daily-us-en-").removesuffix(".xlsx").upper()
        answer = self.sponsor_files.get(fund)
        if isinstance(answer, int):
            return answer, {"Content-Type": "text/html"}, b"<html>Error</html>"
        if answer is None:
            if fund not in SECTOR_FUNDS:
                return 404, {"Content-Type": "text/html"}, b"<html>Page not found</html>"
            answer = holdings_file(fund, self.sponsor_as_of)
        return 200, {"Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}, answer

    def _shares(self, symbol: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Yahoo's fundamentals timeseries as ``get_shares_full`` reads it (``shares_out`` and timestamps)."""
        if symbol in self.unknown or symbol in self.no_shares:
            return 200, {"Content-Type": "application/json"}, json.dumps({"timeseries": {"result": [{"meta": {"symbol": [symbol]}}],
                                                                                         "error": None}}).encode()
        first = dt.datetime.fromtimestamp(int(query["period1"]), dt.UTC).date()
        last = dt.datetime.fromtimestamp(int(query["period2"]), dt.UTC).date()
        seen = shares_observations(symbol, first, last)
        stamps = [int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) for d, _ in seen]
        result = {"meta": {"symbol": [symbol], "type": ["shares_out"]}, "timestamp": stamps, "shares_out": [n for _, n in seen]}
        return 200, {"Content-Type": "application/json"}, json.dumps({"timeseries": {"result": [result], "error": None}}).encode()

    def _too_many(self) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "text/plain"}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return 429, headers, b"Too Many Requests"

    def _quote_summary(self, symbol: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """Fund data (``topHoldings``) for funds, company data with ``marketCap`` for stocks."""
        modules = set(query.get("modules", "").split(","))
        if symbol in self.unknown:
            err = {"quoteSummary": {"result": None, "error": {"code": "Not Found", "description": "Quote not found for symbol: " + symbol}}}
            return 404, {"Content-Type": "application/json"}, json.dumps(err).encode()
        if "topHoldings" in modules:
            holdings = self.holdings.get(symbol, holdings_for(symbol))
            data = {
                "quoteType": {"quoteType": "ETF", "symbol": symbol},
                "summaryProfile": {"longBusinessSummary": f"{symbol} tracks a sector."},
                "topHoldings": {"stockPosition": 0.99, "cashPosition": 0.01,
                                "holdings": [{"symbol": h, "holdingName": n, "holdingPercent": w} for h, n, w in holdings]},
                "fundProfile": {"categoryName": "Sector", "family": "SPDR State Street", "legalType": "Exchange Traded Fund"},
            }
        else:
            data = {"quoteType": {"quoteType": "EQUITY", "symbol": symbol}, "summaryDetail": {"marketCap": market_cap_for(symbol)},
                    "financialData": {}, "defaultKeyStatistics": {}, "assetProfile": {}}
        return 200, {"Content-Type": "application/json"}, json.dumps({"quoteSummary": {"result": [data], "error": None}}).encode()

    def _over_the_rate(self) -> bool:
        """Whether this request makes more than ``max_per_second`` in the last second (attempts count, as at a real limiter)."""
        now = time.monotonic()
        with self._lock:
            while self._recent and now - self._recent[0] >= 1.0:
                self._recent.popleft()
            self._recent.append(now)
            return self.max_per_second is not None and len(self._recent) > self.max_per_second

    def _chart(self, symbol: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        gate = self.gate
        if gate is not None:
            gate.wait(timeout=120)
        with self._lock:
            if self.rate_limit_after is not None and self._chart_served >= self.rate_limit_after:
                return self._too_many()
            script = self.scripted.get(symbol)
            action = script.pop(0) if script else None
            if action is None and self.error_rate and self._random.random() < self.error_rate:
                action = 502
            self._chart_served += 1
        if action is not None:
            if isinstance(action, int):
                return action, {"Content-Type": "text/html"}, b"<html><body>Server error</body></html>"
            if action == "garbage":
                return 200, {"Content-Type": "application/json"}, b"\x00\xffnot json at all"
            if action == "html":
                return 200, {"Content-Type": "text/html"}, b"<html><body>Will be right back</body></html>"
            if action == "truncated":
                body = self._chart_body(symbol, query)
                return 200, {"Content-Type": "application/json"}, body[: len(body) // 2]
            if action == "empty":
                return 200, {"Content-Type": "application/json"}, json.dumps({"chart": {"result": [], "error": None}}).encode()
            if action == "hang":
                with self._lock:
                    self.in_flight.add(symbol)
                try:
                    time.sleep(self.hang_seconds)
                finally:
                    with self._lock:
                        self.in_flight.discard(symbol)
        if symbol in self.unknown:
            err = {"chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}}
            return 404, {"Content-Type": "application/json"}, json.dumps(err).encode()
        interval = query.get("interval", "1d")
        if interval in INTRADAY_MINUTES:
            refusal = self._outside_window(interval, query)
            if refusal:
                err = {"chart": {"result": None, "error": {"code": "Unprocessable Entity", "description": refusal}}}
                return 422, {"Content-Type": "application/json"}, json.dumps(err).encode()
            return 200, {"Content-Type": "application/json"}, self._intraday_body(symbol, interval, query)
        return 200, {"Content-Type": "application/json"}, self._chart_body(symbol, query)

    def _split_adjusted(self, symbol: str, start: int, bar: dict[str, float | int]) -> dict[str, float | int]:
        """An intraday bar as Yahoo serves it today: prices divided (volume multiplied) by every split
        after its session."""
        day = pd.Timestamp(start, unit="s", tz="UTC").tz_convert(NY).date()
        ratio = 1.0
        for ex_date, (num, den) in self.splits.get(symbol, {}).items():
            if ex_date > day:
                ratio *= num / den
        if ratio == 1.0:
            return bar
        return {k: (round(float(v) / ratio, 4) if k != "volume" else int(round(int(v) * ratio))) for k, v in bar.items()}

    @staticmethod
    def _revised(bar: dict[str, float | int], factor: float | None) -> dict[str, float | int]:
        if factor is None:
            return bar
        return {k: (round(float(v) * factor, 4) if k != "volume" else v) for k, v in bar.items()}

    def _outside_window(self, interval: str, query: dict[str, str]) -> str | None:
        """Yahoo's refusal of an intraday request outside its windows (its words), or None."""
        minutes = INTRADAY_MINUTES[interval]
        now = int(time.time())
        p1, p2 = int(query.get("period1", now - 5 * 86400)), int(query.get("period2", now))
        days = LOOKBACK_DAYS.get(minutes, 60)
        if p1 < now - days * 86400:
            return (f"{interval} data not available for startTime={p1} and endTime={p2}. "
                    f"The requested range must be within the last {days} days.")
        span = MAX_SPAN_DAYS.get(minutes)
        if span is not None and p2 - p1 > span * 86400:
            return (f"{interval} data not available for startTime={p1} and endTime={p2}. "
                    f"Only {span} days worth of {interval} granularity data are allowed to be fetched per request.")
        return None

    def _intraday_body(self, symbol: str, interval: str, query: dict[str, str]) -> bytes:
        """Intraday bars (bar starts) of the sessions in the range, regular hours only unless
        ``includePrePost=true``; ``meta.tradingPeriods`` as Yahoo gives it for each."""
        minutes = INTRADAY_MINUTES[interval]
        now = int(time.time())
        p1, p2 = int(query.get("period1", now - 5 * 86400)), int(query.get("period2", now))
        prepost = query.get("includePrePost", "false").lower() == "true"
        periods = session_periods(p1, p2)
        stamps: list[int] = []
        for pre, open_, close, post in periods:
            t = pre if prepost else open_
            while t < (post if prepost else close):
                if p1 <= t < p2 and t + minutes * 60 <= now + minutes * 60:
                    stamps.append(t)
                t += minutes * 60
        revised = [self._revised(intraday_bar_for(symbol, t, minutes), self.intraday_revisions.get((symbol, t))) for t in stamps]
        bars = [self._split_adjusted(symbol, t, bar) for t, bar in zip(stamps, revised, strict=True)]
        if prepost:
            trading: Any = {"pre": [[_period(a, b)] for a, b, _, _ in periods], "regular": [[_period(b, c)] for _, b, c, _ in periods],
                            "post": [[_period(c, d)] for _, _, c, d in periods]}
        else:
            trading = [[_period(b, c)] for _, b, c, _ in periods]
        meta = {
            "currency": "USD", "symbol": symbol, "exchangeName": "NMS", "fullExchangeName": "NasdaqGS", "instrumentType": "EQUITY",
            "firstTradeDate": 345479400, "regularMarketTime": stamps[-1] if stamps else now, "hasPrePostMarketData": True,
            "gmtoffset": -18000, "timezone": "EST", "exchangeTimezoneName": NY, "priceHint": 2, "dataGranularity": interval,
            "range": "", "tradingPeriods": trading,
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
        }
        result: dict[str, Any] = {"meta": meta, "timestamp": stamps,
                                  "indicators": {"quote": [{k: [b[k] for b in bars] for k in ("open", "high", "low", "close", "volume")}]}}
        days = {pd.Timestamp(t, unit="s", tz="UTC").tz_convert(NY).date() for t in stamps}
        splits = {d: v for d, v in self.splits.get(symbol, {}).items() if d in days}
        if splits:  # on the first bar of its session, as Yahoo stamps a split in an intraday answer
            result["events"] = {"splits": {str(_open_of(d)): {"date": _open_of(d), "numerator": n, "denominator": m,
                                                              "splitRatio": f"{n}:{m}"} for d, (n, m) in splits.items()}}
        return json.dumps({"chart": {"result": [result], "error": None}}).encode()

    def _chart_body(self, symbol: str, query: dict[str, str]) -> bytes:
        if "period1" in query:
            days = sessions_in(int(query["period1"]), int(query.get("period2", time.time())))
        else:  # range=1d probe: the last session
            days = [_CAL.date_to_session(pd.Timestamp.now(tz=NY).tz_localize(None).normalize(), direction="previous").date()]
        bars = [self.bar(symbol, d) for d in days]
        stamps = [_stamp(d) for d in days]
        events: dict[str, Any] = {}
        divs = {d: v for d, v in self.dividends.get(symbol, {}).items() if d in days}
        if divs:
            events["dividends"] = {str(_stamp(d)): {"amount": v, "date": _stamp(d)} for d, v in divs.items()}
        splits = {d: v for d, v in self.splits.get(symbol, {}).items() if d in days}
        if splits:
            events["splits"] = {str(_stamp(d)): {"date": _stamp(d), "numerator": n, "denominator": m, "splitRatio": f"{n}:{m}"} for d,
                                (n, m) in splits.items()}
        meta = {
            "currency": "USD", "symbol": symbol, "exchangeName": "PCX", "fullExchangeName": "NYSEArca",
            "instrumentType": "ETF", "firstTradeDate": 725846400, "regularMarketTime": stamps[-1] if stamps else 0,
            "hasPrePostMarketData": True, "gmtoffset": -18000, "timezone": "EST", "exchangeTimezoneName": NY,
            "regularMarketPrice": bars[-1]["close"] if bars else 0, "priceHint": 2, "dataGranularity": "1d",
            "range": query.get("range", ""), "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
        }
        result: dict[str, Any] = {
            "meta": meta, "timestamp": stamps,
            "indicators": {
                "quote": [{k: [b[k] for b in bars] for k in ("open", "high", "low", "close", "volume")}],
                "adjclose": [{"adjclose": [b["adj_close"] for b in bars]}],
            },
        }
        if events:
            result["events"] = events
        return json.dumps({"chart": {"result": [result], "error": None}}).encode()


class _ProxyHandler(BaseHTTPRequestHandler):
    """Accepts CONNECT, then serves HTTPS requests on the tunnel with the fake's certificate."""

    owner: FakeYahoo
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_CONNECT(self) -> None:
        host = self.path.split(":", 1)[0]
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        try:
            tls = self.owner._tls.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        try:
            _serve_tunnel(self.owner, tls, host)
        finally:
            try:
                tls.close()
            except OSError:
                pass
        self.close_connection = True


def _serve_tunnel(owner: FakeYahoo, tls: ssl.SSLSocket, host: str) -> None:
    """Serve keep-alive HTTP/1.1 requests on one TLS tunnel until the client closes it."""
    reader = tls.makefile("rb")
    while True:
        try:
            line = reader.readline(65537)
        except (OSError, ssl.SSLError):
            return
        if not line:
            return
        try:
            _method, target, _ = line.decode("latin-1").split(" ", 2)
        except ValueError:
            return
        headers: dict[str, str] = {}
        while True:
            h = reader.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0") or 0)
        if length:
            reader.read(length)
        url = urlsplit(target)
        req_host = headers.get("host", host).split(":")[0]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        status, extra, body = owner.respond(req_host, url.path, query)
        with owner._lock:
            owner.log.append(Logged(time.time(), req_host, url.path, query, status))
        head = [f"HTTP/1.1 {status} {'OK' if status < 400 else 'Error'}", f"Content-Length: {len(body)}", "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in extra.items()]
        try:
            tls.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:
            return
