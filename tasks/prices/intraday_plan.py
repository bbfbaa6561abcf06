"""Intraday bars: Yahoo's windows, the sessions a range asks for, and the fewest requests that fetch
what is missing.

Yahoo serves 1-minute bars for the last 30 days only, at most 8 days a request; 2- to 90-minute bars
for the last 60 days; hourly bars for the last 730 days; it refuses anything else with HTTP 422
(checked against yfinance 1.7's source, ``../shared/DESIGN.md``). A plan keeps a day's margin inside
each window (a long run sends its last request hours after it planned it) and never asks for a
session outside it: those are said once and skipped. Sessions are the NYSE's (early closes and
holidays included); a session is asked for whole, from midnight to midnight New York time, once it
has closed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from tasks.core.calendar import NY_TZ, nyse

INTERVAL_MINUTES = {"1m": 1, "2m": 2, "5m": 5, "15m": 15, "30m": 30, "90m": 90, "1h": 60}
INTRADAY = tuple(INTERVAL_MINUTES)
SETTLED_AFTER = dt.timedelta(minutes=30)  # a session fetched sooner after its close is fetched again (late prints, revisions)


@dataclass(frozen=True)
class Window:
    """How far back Yahoo serves an interval, and the most calendar days one request may span."""

    lookback_days: int
    max_span_days: int


WINDOWS = {"1m": Window(30, 7), "1h": Window(730, 730), **{i: Window(60, 60) for i in ("2m", "5m", "15m", "30m", "90m")}}


@dataclass(frozen=True)
class Session:
    day: dt.date
    open: dt.datetime  # UTC
    close: dt.datetime  # UTC (13:00 New York on an early close)


@dataclass(frozen=True)
class Request:
    """One request: whole New York days ``first`` .. ``last`` (a Yahoo start and end, UTC)."""

    first: dt.date
    last: dt.date
    sessions: tuple[dt.date, ...]

    @property
    def start(self) -> dt.datetime:
        return _ny_midnight(self.first)

    @property
    def end(self) -> dt.datetime:
        return _ny_midnight(self.last + dt.timedelta(days=1))


def _ny_midnight(day: dt.date) -> dt.datetime:
    return pd.Timestamp(dt.datetime(day.year, day.month, day.day), tz=NY_TZ).tz_convert("UTC").to_pydatetime()


def sessions_of(first: dt.date, last: dt.date) -> list[Session]:
    """The NYSE sessions from ``first`` to ``last`` with their open and close (UTC)."""
    cal = nyse()
    days = cal.sessions_in_range(pd.Timestamp(first), pd.Timestamp(last))
    return [Session(d.date(), cal.session_open(d).to_pydatetime(), cal.session_close(d).to_pydatetime()) for d in days]


def first_served(interval: str, now: dt.datetime) -> dt.date:
    """The first New York day whose bars Yahoo serves at ``interval`` now, a day's margin kept."""
    edge = pd.Timestamp(now).tz_convert(NY_TZ) - pd.Timedelta(days=WINDOWS[interval].lookback_days - 1)
    return (edge + pd.Timedelta(days=1)).date() if edge.time() != dt.time(0) else edge.date()


@dataclass(frozen=True)
class RangePlan:
    """The sessions a range asks for: those Yahoo serves now, and what falls outside its window."""

    interval: str
    sessions: tuple[Session, ...]  # closed, inside the window
    outside: int  # sessions of the range before the window
    first_served: dt.date

    def note(self) -> str | None:
        """The line that says what is skipped, or None."""
        if not self.outside:
            return None
        return (f"{self.interval} bars before {self.first_served} are not served by Yahoo (the last "
                f"{WINDOWS[self.interval].lookback_days} days only): {self.outside} session(s) of the range skipped")


def plan_range(interval: str, first: dt.date, last: dt.date, now: dt.datetime) -> RangePlan:
    """The closed sessions from ``first`` to ``last`` that Yahoo serves at ``interval`` now."""
    edge = first_served(interval, now)
    every = [s for s in sessions_of(first, last) if s.close <= now]
    inside = tuple(s for s in every if s.day >= edge)
    return RangePlan(interval, inside, len(every) - len(inside), edge)


def requests_for(missing: list[dt.date], interval: str) -> list[Request]:
    """The fewest requests that cover the ``missing`` sessions (sorted), each within Yahoo's span:
    greedy from the earliest, which is optimal for covering points with spans of a fixed length
    (the stored sessions between two missing ones are fetched again rather than split a request)."""
    span = WINDOWS[interval].max_span_days
    out: list[Request] = []
    group: list[dt.date] = []
    for day in missing:
        if group and (day - group[0]).days >= span:
            out.append(Request(group[0], group[-1], tuple(group)))
            group = []
        group.append(day)
    if group:
        out.append(Request(group[0], group[-1], tuple(group)))
    return out
