"""One request budget per source, shared through PostgreSQL by every thread, process and machine.

Why the database and not Prefect's global rate limits: every run of every flow has the database
(Prefect may be absent: plain mode is the default), one ``UPDATE`` under a row lock is atomic across
machines and timed by one clock (the server's), and the budget has to *learn* — cool down for all
after a 429, lower its rate, remember it for the next run, climb back slowly — which a Prefect
rate limit (a fixed slot decay) cannot express. ``bench/rate_budget.py`` measures both.

Protocol: ``acquire()`` reserves the next slot (GCRA: ``next_slot`` moves ``60/rate`` s per
request) and sleeps until it; ``penalize()`` reports a 429. While the budget cools down, or when
its daily quota is spent, ``acquire()`` raises ``RateLimited`` at once with the seconds left, so
every process stops instead of piling onto a blocked source. A caller that slept until its slot
looks again just before it sends: a cool-down that began while it slept (another thread's,
process's or machine's 429) stops it too, so after a 429 only the requests already in flight
reach the source, never the ones still waiting for their slots.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from tasks.core.db import connect, describe_dsn
from tasks.core.errors import BadInput, RateLimited, StoreError
from tasks.core.sql_files import statement

DEFAULT_NAME = "yahoo"
# Seed 001's API limits: wait at least 1 s between requests, 2,000 an hour, 48,000 a day (the
# daily quota, below). Every window of a list is kept: requests are spaced evenly at the binding
# (slowest) one, which never bursts, so no window of any length sees more than its share.
DEFAULT_RATE = "60/min,2000/h"
DEFAULT_DAILY_QUOTA = 48_000  # Yahoo's published daily limit (the pipeline's source document)
CLIMB_AFTER = 50  # requests granted without a 429 before the rate climbs
CLIMB_FACTOR = 1.1
BACKOFF_FACTOR = 0.5
FLOOR_PER_MIN = 1.0
MAX_COOLDOWN_S = 6 * 3600.0
_UNITS = {"s": 60.0, "sec": 60.0, "second": 60.0, "m": 1.0, "min": 1.0, "minute": 1.0, "h": 1 / 60, "hour": 1 / 60,
          "d": 1 / 1440, "day": 1 / 1440}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class RateWindow:
    """One ``N/UNIT`` of a rate: ``text`` as given (normalized), ``per_min`` its requests per minute."""

    text: str
    per_min: float


def rate_windows(text: str) -> list[RateWindow]:
    """The windows of ``"60/min,2000/h"`` (any list of N/UNIT; units s, min, h, day).

    Raises:
        BadInput: a part not of that form, or not a positive finite rate.
    """
    windows = []
    for part in text.split(","):
        match = _RATE.match(part.lower())
        if not match or match.group(2) not in _UNITS:
            raise BadInput(f"not a rate (like 60/min, 2/s, 2000/h, or a list: 60/min,2000/h): {text!r}")
        per_min = float(match.group(1)) * _UNITS[match.group(2)]
        if not 0 < per_min < 1e9:
            raise BadInput(f"rate must be above zero: {text!r}")
        windows.append(RateWindow(f"{match.group(1)}/{match.group(2)}", per_min))
    return windows


def binding_window(text: str) -> RateWindow:
    """The window of ``text`` that allows the fewest requests per minute: the one that sets the pace."""
    return min(rate_windows(text), key=lambda w: w.per_min)


def parse_rate(text: str) -> float:
    """Requests per minute at the binding window of ``"60/min"``, ``"2/s"``, ``"60/min,2000/h"``.

    Raises:
        BadInput: not of that form, or not a positive finite rate.
    """
    return binding_window(text).per_min


def normalize_rate(text: str) -> str:
    """``text`` checked and written back the way ``rate_windows`` reads it (``" 60 / MIN"`` → ``"60/min"``).

    Raises:
        BadInput: see ``rate_windows``.
    """
    return ",".join(w.text for w in rate_windows(text))


def rate_param(per_min: float) -> str:
    """``per_min`` as text that ``parse_rate`` reads back exactly (no exponent: ``1000000/min``)."""
    text = repr(float(per_min))  # the shortest text that reads back as the same float
    if "e" in text:
        text = f"{per_min:.15f}".rstrip("0").rstrip(".")
    return text.removesuffix(".0") + "/min"


def format_rate(per_min: float) -> str:
    """A rate in the unit that reads best: ``60/min``, ``2000/h``, ``0.50/h``."""
    per_hour = per_min * 60
    if abs(per_min - round(per_min)) > 1e-6 and abs(per_hour - round(per_hour)) < 1e-6:
        return f"{per_hour:.0f}/h"  # 2000/h, not 33/min
    return f"{per_min:.0f}/min" if per_min >= 10 else f"{per_min:.2f}/min"


def format_duration(seconds: float) -> str:
    """``2 h 30 min``, ``3 min 20 s``, ``45 s``."""
    total = int(round(seconds))
    if total >= 3600:
        total = int(round(total / 60)) * 60  # hours: to the nearest minute
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


@dataclass(frozen=True)
class BudgetState:
    """A budget as stored: the learned rate and whether it is cooling down."""

    name: str
    rate_per_min: float
    ceiling_per_min: float
    cooldown_left_s: float
    granted: int
    limited: int
    day_count: int

    @property
    def seconds_per_request(self) -> float:
        return 60.0 / min(self.rate_per_min, self.ceiling_per_min)


class RateBudget:
    """A named budget in ``rate_budgets`` (see module doc). Picklable: worker processes reconnect.

    Args:
        dsn: the database every sharer uses.
        name: the budget's name (one per source, e.g. ``yahoo``).
        per_min: the configured ceiling, requests per minute.
        cooldown_s: the first cool-down after a 429 (doubles while a block lasts).
        daily_cap: requests allowed per UTC day (None: no quota).
        sleep: how to wait for a slot (injected for tests; interruptible with Ctrl+C).
    """

    def __init__(self, dsn: str, name: str = DEFAULT_NAME, *, per_min: float, cooldown_s: float = 900.0,
                 daily_cap: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.dsn = dsn
        self.name = name
        self.per_min = per_min
        self.cooldown_s = cooldown_s
        self.daily_cap = daily_cap
        self._sleep = sleep
        self._conn: psycopg.Connection[Any] | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_conn=None, _lock=None, _sleep=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._sleep = time.sleep
        self._pid = os.getpid()

    # -- connection ------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._pid != os.getpid():
            self._pid = os.getpid()
            conn = connect(self.dsn, autocommit=True)
            # Losing the last few reservations in a server crash is harmless; an fsync per request is not.
            conn.execute("SET synchronous_commit = off")
            conn.execute(
                "INSERT INTO rate_budgets (name, ceiling_per_min, rate_per_min) VALUES (%(n)s, %(c)s, %(c)s)"
                " ON CONFLICT (name) DO UPDATE SET ceiling_per_min = EXCLUDED.ceiling_per_min,"
                " rate_per_min = least(rate_budgets.rate_per_min, EXCLUDED.ceiling_per_min)",
                {"n": self.name, "c": self.per_min},
            )
            self._conn = conn
        return self._conn

    def _run(self, query: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """One statement on the budget's connection; reconnects once if the server went away."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return self._connection().execute(statement(query), params).fetchone()
                except psycopg.OperationalError as exc:
                    if self._conn is not None:
                        self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise StoreError(f"rate budget {self.name!r}: database at {describe_dsn(self.dsn)} unavailable: "
                                         f"{type(exc).__name__}") from exc
                except StoreError:
                    if attempt == 2:
                        raise
                    time.sleep(0.5)
        return None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- protocol --------------------------------------------------------------------------
    def acquire(self) -> float:
        """Wait for this caller's slot; return the seconds waited.

        Raises:
            RateLimited: the budget is cooling down, or today's quota is spent.
            StoreError: the database is unreachable.
        """
        wait, _ = self._reserve()
        if wait > 0:
            self._sleep(wait)
            self._still_open()
        return wait

    def _reserve(self) -> tuple[float, float]:
        """The seconds until the next slot, and when the slot begins by the database's clock (no sleeping)."""
        row = self._run("budget_reserve", {"name": self.name, "ceiling": self.per_min, "climb_after": CLIMB_AFTER,
                                           "climb_factor": CLIMB_FACTOR, "daily_cap": self.daily_cap})
        if row is not None:
            return float(row[0]), float(row[1])
        state = self.state()
        if state.cooldown_left_s > 0:
            raise RateLimited(self.name, f"budget {self.name!r} cooling down after HTTP 429", retry_after=state.cooldown_left_s,
                              from_budget=True, refused=True)
        now = dt.datetime.now(dt.UTC)
        midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.UTC)
        raise RateLimited(self.name, f"daily quota of {self.daily_cap} requests for {self.name!r} used up",
                          retry_after=(midnight - now).total_seconds(), from_budget=True, refused=True)

    def _still_open(self) -> None:
        """After sleeping until a slot: stop if a cool-down began meanwhile (see module doc).

        Raises:
            RateLimited: the budget is cooling down now.
        """
        left = self.state().cooldown_left_s
        if left > 0:
            raise RateLimited(self.name, f"budget {self.name!r} cooling down after HTTP 429", retry_after=left, from_budget=True,
                              refused=True)

    def penalize(self, retry_after: float | None = None) -> float:
        """Report a 429: cool down (for every sharer) and lower the rate. Returns the seconds left."""
        row = self._run("budget_penalize", {"name": self.name, "retry_after": float(retry_after or 0.0), "base_s": self.cooldown_s,
                                            "max_s": max(MAX_COOLDOWN_S, self.cooldown_s), "floor": min(FLOOR_PER_MIN, self.per_min),
                                            "backoff_factor": BACKOFF_FACTOR})
        return float(row[0]) if row is not None else self.cooldown_s

    def state(self) -> BudgetState:
        """The stored budget (created at the configured rate if new)."""
        row = self._run("budget_state", {"name": self.name})
        assert row is not None
        return BudgetState(self.name, float(row[0]), float(row[1]), float(row[2]), int(row[3]), int(row[4]), int(row[5]))


def peek_budget(conn: psycopg.Connection[Any], name: str, per_min: float) -> BudgetState:
    """The budget as it stands, read on an existing connection without changing it (for dry runs)."""
    row = conn.execute(statement("budget_state"), {"name": name}).fetchone()
    if row is None:
        return BudgetState(name, per_min, per_min, 0.0, 0, 0, 0)
    return BudgetState(name, min(float(row[0]), per_min), per_min, float(row[2]), int(row[3]), int(row[4]), int(row[5]))


def budget_eta_seconds(state: BudgetState, requests: int, *, delay: float = 0.0) -> float:
    """Least time ``requests`` take at the budget's current rate (and ``delay`` spacing), cool-down included."""
    if requests <= 0:
        return 0.0
    return state.cooldown_left_s + (requests - 1) * max(delay, state.seconds_per_request)


def describe_budget(state: BudgetState, *, requests: int | None, delay: float = 0.0) -> str:
    """One dry-run line: the budget's learned rate, any cool-down, and what ``requests`` cost at it
    (``None``: the caller states its own ETA, which the budget's rate feeds)."""
    effective = min(state.rate_per_min, state.ceiling_per_min)
    learned = "" if effective >= state.ceiling_per_min else f", lowered from {format_rate(state.ceiling_per_min)} after 429s"
    cool = f"; cooling down for {state.cooldown_left_s:.0f} s more" if state.cooldown_left_s > 0 else ""
    line = f"Rate budget {state.name!r}: {format_rate(effective)}{learned}{cool}"
    if requests is None:
        return line
    return f"{line}; {requests} request(s) need at least {format_duration(budget_eta_seconds(state, requests, delay=delay))}"
