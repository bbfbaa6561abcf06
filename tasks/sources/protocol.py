"""What the daily-bar logic needs of a source: one request's bars. ``YahooSource`` (yfinance,
paced by the shared budget) is the one the commands use; logic tests hand the same code an
in-memory source (``test/memory_source.py``) and test planning and storing without HTTP, while
the yfinance adapter and the commands keep being tested against the fake Yahoo."""

from __future__ import annotations

from typing import Protocol

from tasks.core.types import FetchRequest, FetchResult


class BarSource(Protocol):
    def fetch(self, request: FetchRequest) -> FetchResult:
        """Daily bars (``BAR_COLUMNS``) of the request's sessions, and the corporate actions in them.

        Raises:
            RateLimited: the source refused for now (429).
            SourceError: no usable data for the ticker.
        """
        ...
