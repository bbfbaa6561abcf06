"""One exception hierarchy for the whole pipeline, and the ``Outcome`` of a run. The CLI edge
(``flows/cli.py``) maps each class and each outcome to an exit code (shown here for reference).

    PipelineError
    ├── BadInput          the caller's fault (flag, ticker, file); never retried      → exit 2
    │   └── MissingInputs a pipeline stage's inputs are missing: run the named stage first
    ├── SourceError       the source gave nothing usable for one symbol (.symbol)     → that item fails
    │   ├── NoData        no data for the symbol (unknown, delisted, empty range)     → "no data", not a failure
    │   ├── TransientSourceError  timeout, 5xx, reset: worth retrying (tenacity)
    │   └── RateLimited   HTTP 429 (.retry_after seconds, may be None)              → stop, exit 75
    ├── StoreError        PostgreSQL unreachable or refused a batch                   → exit 1
    └── Busy              another run holds the lock on this database                 → exit 75

Foreign errors are translated once, at their boundary: yfinance/curl in ``sources/yahoo.py``,
requests in ``sources/fmp.py``, psycopg in ``core/db.py`` (``database_errors``).
"""

from __future__ import annotations

import enum


class PipelineError(Exception):
    """Base of every error this project raises on purpose."""


class BadInput(PipelineError):
    """The caller gave something unusable; nothing has been written."""


class MissingInputs(BadInput):
    """A pipeline stage's stored inputs are not there; ``stage`` makes them (the message says so too)."""

    def __init__(self, message: str, stage: str) -> None:
        super().__init__(message)
        self.stage = stage

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.stage))


class SourceError(PipelineError):
    """The source returned nothing usable for ``symbol``."""

    def __init__(self, symbol: str, reason: str) -> None:
        super().__init__(f"{symbol}: {reason}")
        self.symbol = symbol
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:  # keep attributes across process boundaries
        return (type(self), (self.symbol, self.reason))


class NoData(SourceError):
    """The source has no data for the symbol: unknown, delisted, or nothing in the range. Normal for
    a few of hundreds of holdings (seed 001): reported as "no data", never a failed run by itself."""


class TransientSourceError(SourceError):
    """A failure that a later attempt may not meet (timeout, 5xx, connection reset)."""


class RateLimited(SourceError):
    """The source answered 429 (or its budget is cooling down): stop now, resume after ``retry_after`` s.

    ``from_budget``: ``retry_after`` is the shared budget's cool-down, exact; otherwise it is the
    source's Retry-After hint (if any), and callers wait at least their own configured time.
    ``refused``: our own budget said no before any request was sent (a cool-down an earlier 429
    began, or the daily quota): the source was not asked, so this is no new rate-limit stop.
    """

    def __init__(self, symbol: str, reason: str = "rate limited (HTTP 429)", retry_after: float | None = None,
                 from_budget: bool = False, refused: bool = False) -> None:
        super().__init__(symbol, reason)
        self.retry_after = retry_after
        self.from_budget = from_budget
        self.refused = refused

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.symbol, self.reason, self.retry_after, self.from_budget, self.refused))

    def stopping(self, item: str) -> str:
        """The line a run prints for the item it stopped at."""
        if self.refused:
            return f"{item}: not asked: {self.reason}; stopping now"
        return f"{item}: rate limited by the source; stopping now"


class StoreError(PipelineError):
    """PostgreSQL could not be reached or refused the batch."""


class Busy(PipelineError):
    """Another run of the same flow is active on this database: try again when it ends."""


class Outcome(enum.IntEnum):
    """How a run ended, in increasing severity (the worse of two is their ``max``). The CLI edge maps
    each to its exit code (``flows/cli.py``), the Prefect glue to a run state; nothing else knows them."""

    DONE = 0
    SOME_FAILED = 1
    BAD_INPUT = 2
    RATE_LIMITED = 3
    INTERRUPTED = 4

    @property
    def words(self) -> str:
        """``"rate limited"``: for summaries and artifacts."""
        return self.name.lower().replace("_", " ")
