"""Minimum spacing between requests, as a plain object with an injected clock.

This is the in-process floor (``--delay``); a thread-safe gate every request passes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class MinIntervalGate:
    """Lets one caller through at a time, at least ``min_interval`` seconds after the previous one
    (a floor between requests in this process; the rate limit shared by processes is ``budget.RateBudget``).

    Args:
        min_interval: seconds between two acquisitions (0 disables the wait).
        clock: monotonic clock in seconds; injected so tests need no patching.
        sleep: how to wait; injected for the same reason (and made interruptible by callers).
    """

    def __init__(
        self,
        min_interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if min_interval < 0:
            raise ValueError("min_interval must be >= 0")
        self.min_interval = min_interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._last: float | None = None

    def acquire(self) -> float:
        """Block until the next request may go; return how long this call waited."""
        with self._lock:
            now = self._clock()
            wait = 0.0
            if self._last is not None:
                wait = self._last + self.min_interval - now
            if wait > 0:
                self._sleep(wait)
                now = self._clock()
            else:
                wait = 0.0
            self._last = now
            return wait

    def mark(self) -> None:
        """Count the next interval from now (e.g. from the end of a long fetch, not its start)."""
        with self._lock:
            self._last = self._clock()

    def remaining(self) -> float:
        """Seconds the next ``acquire`` would wait if called now."""
        with self._lock:
            if self._last is None:
                return 0.0
            return max(0.0, self._last + self.min_interval - self._clock())
