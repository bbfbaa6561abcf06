"""NYSE sessions from ``exchange_calendars``: which trading days a backfill wants."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

import pandas as pd

from tasks.core.errors import BadInput
from tasks.core.time_bounds import CALENDAR_START

if TYPE_CHECKING:
    from exchange_calendars import ExchangeCalendar

NY_TZ = "America/New_York"
MAX_DAYS = 10_000  # ~40 years of sessions; more than any source serves daily bars for


@lru_cache(maxsize=1)
def nyse() -> ExchangeCalendar:
    """The NYSE calendar, built once per process (it covers 1980 to a year ahead)."""
    import exchange_calendars as xcals

    return xcals.get_calendar("XNYS", start=CALENDAR_START.isoformat())


def last_closed_session(now: dt.datetime | None = None) -> dt.date:
    """The latest NYSE session whose close (early closes included) is at or before ``now``."""
    cal = nyse()
    moment = pd.Timestamp(now or dt.datetime.now(dt.UTC))
    if moment.tzinfo is None:
        moment = moment.tz_localize("UTC")
    local_day = pd.Timestamp(moment.tz_convert(NY_TZ).date())
    session = cal.date_to_session(local_day, direction="previous")
    if cal.session_close(session) > moment:
        session = cal.previous_session(session)
    return session.date()


def next_close(session: dt.date) -> dt.datetime:
    """The close (UTC) of the NYSE session after ``session``: an event at or after it has its base bar
    in a session after ``session``, which a run whose data ends at ``session`` cannot know yet."""
    cal = nyse()
    return cal.session_close(cal.next_session(pd.Timestamp(session))).to_pydatetime()


def sessions_back(days: int, end: dt.date | None = None, *, now: dt.datetime | None = None) -> list[dt.date]:
    """The last ``days`` NYSE sessions up to ``end`` (default: the last closed session), oldest first.

    Raises:
        BadInput: ``days`` is not within 1..MAX_DAYS or ``end`` is outside the calendar.
    """
    if not 1 <= days <= MAX_DAYS:
        raise BadInput(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    cal = nyse()
    last = last_closed_session(now)
    if end is not None:
        if end > last:
            end = last
        stamp = pd.Timestamp(end)
        if stamp < cal.first_session:
            raise BadInput(f"end date {end} is before the calendar starts ({cal.first_session.date()})")
        last = cal.date_to_session(stamp, direction="previous").date()
    stop = cal.sessions.get_loc(pd.Timestamp(last))
    start = max(0, stop - days + 1)
    return [ts.date() for ts in cal.sessions[start : stop + 1]]


def planned_sessions(days: int | None, end: dt.date | None, say: Callable[[str], object], *,
                     start: dt.date | None = None) -> list[dt.date]:
    """The sessions from ``start``, or the last ``days`` of them, to ``end`` (default and at the latest:
    the last closed session), saying so when ``end`` was moved back (it has not closed yet).

    Raises:
        BadInput: as ``sessions_back``; neither or both of ``start`` and ``days``; no session in the range.
    """
    last = last_closed_session()
    if (start is None) == (days is None):
        raise BadInput("give the range as --start YYYY-MM-DD or --days N (one of them)")
    if start is not None:
        final = min(end or last, last)
        sessions = sessions_between(start, final)
        if not sessions:
            raise BadInput(f"no NYSE session from {start} to {final}" + (" (the last closed one)" if final == last else ""))
    else:
        assert days is not None
        sessions = sessions_back(days, end)
    note = future_end_note(end, last)
    if note:
        say(note)
    return sessions


def future_end_note(end: dt.date | None, last: dt.date) -> str | None:
    """The line that says a requested end date was moved back to the last closed session (``last``)."""
    if end is None or end <= last:
        return None
    return f"Note: --end {end} has not closed yet; using the last closed NYSE session, {last}"


def sessions_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """NYSE sessions from ``first`` to ``last`` inclusive.

    Raises:
        BadInput: the range reaches outside the exchange calendar's years.
    """
    if last < first:
        return []
    cal = nyse()
    if pd.Timestamp(first) < cal.first_session:
        raise BadInput(f"start date {first} is before the NYSE calendar starts ({cal.first_session.date()})")
    if pd.Timestamp(last) > cal.last_session:
        raise BadInput(f"end date {last} is after the NYSE calendar ends ({cal.last_session.date()})")
    return [ts.date() for ts in cal.sessions_in_range(pd.Timestamp(first), pd.Timestamp(last))]


def session_count(first: dt.date, last: dt.date) -> int:
    """How many NYSE sessions lie from ``first`` to ``last`` inclusive."""
    sessions = nyse().sessions
    return int(sessions.searchsorted(pd.Timestamp(last), side="right") - sessions.searchsorted(pd.Timestamp(first), side="left"))


def next_day(day: dt.date) -> dt.date:
    """The calendar day after ``day`` (an exclusive end for a source request)."""
    return day + dt.timedelta(days=1)
