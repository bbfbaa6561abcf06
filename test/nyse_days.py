"""NYSE trading days from a calendar written out by hand (the exchange's published holidays), so
tests expect sessions from something other than the project's own calendar (exchange_calendars).
Early closes are sessions; the day of national mourning for President Carter (2025-01-09) is not."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

HOLIDAYS = {dt.date.fromisoformat(d) for d in (
    "2024-01-01", "2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27", "2024-06-19", "2024-07-04", "2024-09-02",
    "2024-11-28", "2024-12-25",
    "2025-01-01", "2025-01-09", "2025-01-20", "2025-02-17", "2025-04-18", "2025-05-26", "2025-06-19", "2025-07-04",
    "2025-09-01", "2025-11-27", "2025-12-25",
    "2026-01-01", "2026-01-19", "2026-02-16", "2026-04-03", "2026-05-25", "2026-06-19", "2026-07-03", "2026-09-07",
    "2026-11-26", "2026-12-25",
    "2027-01-01", "2027-01-18", "2027-02-15", "2027-03-26", "2027-05-31", "2027-06-18", "2027-07-05", "2027-09-06",
    "2027-11-25", "2027-12-24",
)}
FIRST, LAST = dt.date(2024, 1, 1), dt.date(2027, 12, 31)


def trading_days(first: dt.date, last: dt.date) -> list[dt.date]:
    """Weekdays from ``first`` to ``last`` inclusive that are not holidays."""
    assert FIRST <= first and last <= LAST, f"the hand-written calendar covers {FIRST}..{LAST} only"
    days = (first + dt.timedelta(days=k) for k in range((last - first).days + 1))
    return [d for d in days if d.weekday() < 5 and d not in HOLIDAYS]


def last_trading_days(count: int, end: dt.date) -> list[dt.date]:
    """The last ``count`` trading days up to ``end`` inclusive, oldest first."""
    days = trading_days(max(FIRST, end - dt.timedelta(days=count * 2 + 20)), end)
    assert len(days) >= count
    return days[-count:]


# Sessions that close at 13:00 New York (the exchange's published early closes).
EARLY_CLOSES = {dt.date.fromisoformat(d) for d in (
    "2024-07-03", "2024-11-29", "2024-12-24", "2025-07-03", "2025-11-28", "2025-12-24", "2026-11-27", "2026-12-24",
    "2027-11-26",
)}
NY = ZoneInfo("America/New_York")


def session_hours(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """A trading day's open and close (UTC): 09:30 to 16:00 New York, 13:00 on an early close."""
    close = dt.time(13, 0) if day in EARLY_CLOSES else dt.time(16, 0)
    return (dt.datetime.combine(day, dt.time(9, 30), NY).astimezone(dt.UTC), dt.datetime.combine(day, close, NY).astimezone(dt.UTC))


def closed_trading_days(count: int, now: dt.datetime | None = None) -> list[dt.date]:
    """The last ``count`` trading days whose close has passed ``now``, oldest first."""
    moment = now or dt.datetime.now(dt.UTC)
    days = [d for d in last_trading_days(count + 1, moment.astimezone(NY).date()) if session_hours(d)[1] <= moment]
    return days[-count:]
