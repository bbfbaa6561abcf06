"""Values that carry work between steps: plan → fetch → normalize → store."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

# The one shape of daily bars after normalize.py, in COPY column order.
BAR_COLUMNS: tuple[str, ...] = ("ticker", "trade_date", "open", "high", "low", "close", "adj_close", "volume")
# Splits and dividends found beside them.
ACTION_COLUMNS: tuple[str, ...] = ("ticker", "ex_date", "kind", "value")


@dataclass(frozen=True, order=True)
class FetchRequest:
    """Daily bars of ``symbol`` for the sessions from ``start`` to ``end``, both inclusive.

    Hashable: it is also the download-cache key and a safe Prefect task input.
    """

    symbol: str
    start: dt.date
    end: dt.date

    def covers(self, other: FetchRequest) -> bool:
        return self.symbol == other.symbol and self.start <= other.start and self.end >= other.end


@dataclass(frozen=True)
class FetchResult:
    """Normalized bars (``BAR_COLUMNS``) answering ``request``, and where they came from."""

    request: FetchRequest
    bars: pd.DataFrame
    from_cache: bool
    actions: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(ACTION_COLUMNS)))


@dataclass(frozen=True)
class StoreCounts:
    """What an upsert did, in rows."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0

    def __add__(self, other: StoreCounts) -> StoreCounts:
        return StoreCounts(self.new + other.new, self.updated + other.updated, self.unchanged + other.unchanged)
