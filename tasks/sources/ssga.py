"""Every constituent of a Select Sector SPDR fund, from the sponsor's daily holdings file.

State Street (SSGA) publishes one spreadsheet per fund each business day (``SSGA_HOLDINGS_URL``
overrides the address; ``{fund}`` is the fund's symbol in lower case)::

    https://www.ssga.com/us/en/intermediary/library-content/products/fund-data/etfs/us/holdings-daily-us-en-xlk.xlsx

Its layout: label rows (``Fund Name:``, ``Ticker Symbol:``, ``Holdings:`` with ``As of 28-Nov-2025``),
a blank row, the header (Name, Ticker, Identifier, SEDOL, Weight, Sector, Shares Held, Local
Currency), one row per position with the weight in percent, then a blank row and disclaimers.
Cash, money-market and futures lines (sector ``-``, tickers like ``CASH_USD``) are not stocks and
are counted but left out; symbols become Yahoo's spelling (``BRK.B`` → ``BRK-B``).

A file is kept 24 h under ``<cache>/holdings/``; a download takes a slot from its own ``ssga``
budget; transient failures are retried with tenacity; a cached file that no longer parses is
deleted and downloaded again.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from curl_cffi import requests as curl_requests

from tasks.core.errors import RateLimited, SourceError, TransientSourceError
from tasks.core.retries import retrying
from tasks.sources.budget import RateBudget
from tasks.sources.yahoo import parse_retry_after

DEFAULT_URL = "https://www.ssga.com/us/en/intermediary/library-content/products/fund-data/etfs/us/holdings-daily-us-en-{fund}.xlsx"
BUDGET_NAME = "ssga"
CACHE_TTL_S = 24 * 3600.0
MAX_FILE_BYTES = 20 * 1024 * 1024  # a fund's file is ~30 KB; anything this large is not one
MAX_ROWS = 20_000
_STOCK_SYMBOL = re.compile(r"^[A-Z]{1,6}(?:[./][A-Z]{1,2})?$")
_NOT_A_STOCK = re.compile(r"\b(?:CASH|US DOLLAR|FUTURES?|FUT|MONEY MARKET|SWAP|TREASURY BILL)\b", re.IGNORECASE)
_AS_OF = re.compile(r"as of\s+(\d{1,2}-[A-Za-z]{3}-\d{4})", re.IGNORECASE)
COLUMNS = ("holding", "sponsor_symbol", "name", "weight", "shares_held")


class MalformedHoldingsFile(ValueError):
    """The bytes are not a holdings file of the expected layout."""


@dataclass(frozen=True)
class FundHoldings:
    """One fund's stocks as of the file's date; ``skipped``: cash, futures and other non-stock lines."""

    fund: str
    as_of: dt.date
    holdings: pd.DataFrame  # COLUMNS; weight as a fraction (0.145 = 14.5%)
    skipped: int
    from_cache: bool = False


def yahoo_symbol(sponsor_symbol: str) -> str:
    """Yahoo's spelling of a US share class: ``BRK.B`` and ``BRK/B`` are ``BRK-B``."""
    return sponsor_symbol.replace(".", "-").replace("/", "-")


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.replace(",", "").replace("%", "").strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def parse_holdings_file(data: bytes, fund: str) -> FundHoldings:
    """The stocks in one fund's holdings file (see module doc for the layout).

    Raises:
        MalformedHoldingsFile: not a spreadsheet, another fund's file, no date, no header or no stock.
    """
    import openpyxl

    if len(data) > MAX_FILE_BYTES:
        raise MalformedHoldingsFile(f"{len(data)} bytes: too large for a holdings file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Workbook contains no default style": how SSGA writes them
            book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl errors alike: the bytes are not a workbook
        raise MalformedHoldingsFile(f"not a spreadsheet ({type(exc).__name__})") from exc
    try:
        rows = [tuple(row) for _, row in zip(range(MAX_ROWS), book.active.iter_rows(values_only=True), strict=False)]
    finally:
        book.close()
    as_of: dt.date | None = None
    header_at = None
    for i, row in enumerate(rows[:30]):
        cells = [_text(c) for c in row]
        if cells and cells[0].lower().startswith("ticker symbol") and len(cells) > 1 and cells[1] and cells[1].upper() != fund.upper():
            raise MalformedHoldingsFile(f"the file is for {cells[1]}, not {fund}")
        for cell in cells:
            found = _AS_OF.search(cell)
            if found and as_of is None:
                as_of = dt.datetime.strptime(found.group(1).title(), "%d-%b-%Y").date()
        lowered = [c.lower() for c in cells]
        if "ticker" in lowered and "weight" in lowered:
            header_at = i
            break
    if as_of is None:
        raise MalformedHoldingsFile("no 'As of' date in the header rows")
    if header_at is None:
        raise MalformedHoldingsFile("no header row with Ticker and Weight")
    header = [_text(c).lower() for c in rows[header_at]]
    col = {name: header.index(name) for name in ("name", "ticker", "weight", "sector", "shares held") if name in header}
    out: dict[str, list[Any]] = {}
    skipped = 0
    for row in rows[header_at + 1:]:
        cells = list(row) + [None] * (len(header) - len(row))
        if all(_text(c) == "" for c in cells):
            break  # the blank row before the disclaimers
        name = _text(cells[col["name"]]) if "name" in col else ""
        symbol = _text(cells[col["ticker"]]).upper()
        sector = _text(cells[col["sector"]]) if "sector" in col else "?"
        weight = _number(cells[col["weight"]])
        shares = _number(cells[col["shares held"]]) if "shares held" in col else None
        if (not _STOCK_SYMBOL.fullmatch(symbol) or sector in ("", "-") or _NOT_A_STOCK.search(name)
                or weight is None or weight <= 0 or (shares is not None and shares <= 0)):
            skipped += 1
            continue
        holding = yahoo_symbol(symbol)
        if holding in out:  # one stock listed twice (two lots): one holding
            out[holding][2] += weight / 100.0
            out[holding][3] = None if shares is None or out[holding][3] is None else out[holding][3] + shares
            continue
        out[holding] = [symbol, name, weight / 100.0, shares]
    if not out:
        raise MalformedHoldingsFile("no stock in the file")
    frame = pd.DataFrame([(h, *v) for h, v in out.items()], columns=list(COLUMNS))
    frame = frame.sort_values(["weight", "holding"], ascending=[False, True], kind="mergesort").reset_index(drop=True)
    return FundHoldings(fund, as_of, frame, skipped)


class SsgaHoldings:
    """Downloads (or reads from the cache) one fund's daily holdings file.

    Args:
        cache_dir: the download cache root (files under ``holdings/``).
        budget: the ``ssga`` budget (None: no pacing).
        url: the address template (default: State Street's own; ``SSGA_HOLDINGS_URL`` at the edge).
    """

    def __init__(self, cache_dir: Path, *, budget: RateBudget | None, url: str | None = None, timeout: float = 20.0,
                 max_retries: int = 3, backoff_initial: float = 1.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.dir = Path(cache_dir) / "holdings"
        self.budget = budget
        self.url = url or DEFAULT_URL
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_initial = backoff_initial
        self.requests = 0
        self._clock = clock
        self._sleep = sleep

    def holdings(self, fund: str) -> FundHoldings:
        """The fund's stocks: from a fresh cached file, else downloaded.

        Raises:
            RateLimited: the sponsor answered 429 (the ``ssga`` budget cools down).
            SourceError: no file for the fund, or none that parses after the retries.
        """
        path = self.dir / f"{fund.lower()}.xlsx"
        cached = self._cached(path, fund)
        if cached is not None:
            return cached
        again = retrying(TransientSourceError, attempts=self.max_retries + 1, initial=self.backoff_initial, most=30.0, sleep=self._sleep)
        data, parsed = again(self._download, fund)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return parsed

    def cached(self, fund: str) -> FundHoldings | None:
        """The fund's holdings from a fresh cached file, or None; touches nothing (for dry runs)."""
        return self._cached(self.dir / f"{fund.lower()}.xlsx", fund, repair=False)

    def _cached(self, path: Path, fund: str, *, repair: bool = True) -> FundHoldings | None:
        try:
            if not path.is_file() or path.is_symlink():
                return None
            age = self._clock() - path.stat().st_mtime
            if not 0 <= age < CACHE_TTL_S:  # a file from the future is not fresh either
                return None
            parsed = parse_holdings_file(path.read_bytes(), fund)
        except MalformedHoldingsFile:
            if repair:
                path.unlink(missing_ok=True)  # garbled on disk: fetch it again
            return None
        except OSError:
            return None
        return FundHoldings(parsed.fund, parsed.as_of, parsed.holdings, parsed.skipped, from_cache=True)

    def _download(self, fund: str) -> tuple[bytes, FundHoldings]:
        if self.budget is not None:
            self.budget.acquire()
        self.requests += 1
        try:
            response = curl_requests.get(self.url.format(fund=fund.lower()), impersonate="chrome", timeout=self.timeout)
        except curl_requests.exceptions.RequestException as exc:
            raise TransientSourceError(fund, f"holdings file: network error ({type(exc).__name__})") from exc
        status = response.status_code
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            exact = False
            if self.budget is not None:
                retry_after, exact = self.budget.penalize(retry_after), True
            raise RateLimited(fund, "holdings file: rate limited (HTTP 429)", retry_after=retry_after, from_budget=exact)
        if status >= 500:
            raise TransientSourceError(fund, f"holdings file: HTTP {status}")
        if status != 200:
            raise SourceError(fund, f"holdings file: HTTP {status}")
        try:
            return response.content, parse_holdings_file(response.content, fund)
        except MalformedHoldingsFile as exc:  # a half-written or error page served as the file: ask again
            raise TransientSourceError(fund, f"holdings file unreadable: {exc}") from exc
