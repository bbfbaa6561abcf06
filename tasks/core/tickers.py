"""Ticker universes and the one place tickers from users are validated."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from tasks.core.errors import BadInput

BENCHMARK = "SPY"
# Order used by the staggered sector runner (as in the source guide).
SECTOR_ETFS: tuple[str, ...] = ("XLK", "XLV", "XLF", "XLY", "XLC", "XLI", "XLP", "XLE", "XLU", "XLRE", "XLB")
# SPY first, then the sectors in the order the backfill guide lists them.
ETF_UNIVERSE: tuple[str, ...] = (BENCHMARK, "XLK", "XLV", "XLF", "XLE", "XLY", "XLP", "XLI", "XLB", "XLU", "XLRE", "XLC")

# At least one letter or digit: "." and ".." would make the request path /v8/finance/chart/ (or its parent).
_TICKER = re.compile(r"^(?=.*[A-Z0-9])[A-Z0-9.^=-]{1,15}$")


def validate_ticker(raw: str) -> str:
    """Return the ticker upper-cased and stripped, or raise BadInput.

    Raises:
        BadInput: the text is not a plausible Yahoo symbol.
    """
    ticker = raw.strip().upper()
    if not _TICKER.fullmatch(ticker):
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise BadInput(f"invalid ticker {shown!r}: expected 1-15 of A-Z 0-9 . ^ = -, at least one of them a letter or digit")
    return ticker


def parse_ticker_list(text: str | Iterable[str]) -> list[str]:
    """Parse ``"XLK, XLV"`` (or a list) into validated tickers, order kept, duplicates dropped.

    Raises:
        BadInput: any item is invalid, or the list is empty.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    tickers: list[str] = []
    bad: list[str] = []
    for item in items:
        if not item.strip():
            continue
        try:
            ticker = validate_ticker(item)
        except BadInput:
            bad.append(item.strip())
            continue
        if ticker not in tickers:
            tickers.append(ticker)
    if bad:
        raise BadInput("invalid ticker(s): " + ", ".join(repr(b[:40]) for b in bad)
                       + " (allowed: 1-15 of A-Z 0-9 . ^ = -, at least one a letter or digit)")
    if not tickers:
        raise BadInput("no tickers given")
    return tickers


@dataclass(frozen=True)
class Shard:
    """Share ``number`` of ``count`` of a set of tickers, chosen by a stable hash of each name
    (CRC-32: the same on every run, machine and Python), so the shards of one run never overlap
    and together hold every ticker, however the set grows between runs."""

    number: int
    count: int

    def takes(self, ticker: str) -> bool:
        return zlib.crc32(ticker.encode()) % self.count == self.number - 1

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"2/4"`` → Shard(2, 4).

    Raises:
        BadInput: not K/N with 1 <= K <= N <= 1000.
    """
    found = re.fullmatch(r"\s*(\d{1,4})\s*/\s*(\d{1,4})\s*", str(text))
    if not found or not 1 <= int(found[1]) <= int(found[2]) <= 1000:
        raise BadInput(f"shard {text!r}: expected K/N with 1 <= K <= N <= 1000, e.g. 2/4")
    return Shard(int(found[1]), int(found[2]))
