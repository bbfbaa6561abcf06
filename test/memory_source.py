"""An in-memory daily-bar source (``tasks/sources/protocol.BarSource``) for logic tests: the bars
it holds, the requests it was asked, no HTTP. The yfinance adapter and the commands are tested
against the fake Yahoo instead."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from tasks.core.errors import SourceError
from tasks.core.types import BAR_COLUMNS, FetchRequest, FetchResult


@dataclass
class MemorySource:
    bars: dict[str, list[tuple[dt.date, float, float, float, float, float, int]]] = field(default_factory=dict)  # ticker → OHLC, adj, vol
    asked: list[FetchRequest] = field(default_factory=list)

    def fetch(self, request: FetchRequest) -> FetchResult:
        self.asked.append(request)
        if request.symbol not in self.bars:
            raise SourceError(request.symbol, "possibly delisted; no price data found")
        rows = [(request.symbol, *bar) for bar in self.bars[request.symbol] if request.start <= bar[0] <= request.end]
        return FetchResult(request, pd.DataFrame(rows, columns=list(BAR_COLUMNS)), from_cache=False)
