"""The times this project stores (events, ticks): pandas' nanosecond timestamps and the calendar
tables end within these bounds, so a time outside them is a typo, not data (and year 1 or 9999 in
UTC overflows Python's datetime on the way to a minute bar). A module of its own: the JSONL loader
processes import it without pandas."""

from __future__ import annotations

import datetime as dt

EARLIEST_TIME = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST_TIME = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
# The NYSE calendar the project builds starts on CALENDAR_START (tasks/core/calendar.py), whose
# first session is the next day: a session date before that is refused where it is typed, before
# anything is written.
CALENDAR_START = dt.date(1980, 1, 1)
CALENDAR_FIRST_DAY = dt.date(1980, 1, 2)
