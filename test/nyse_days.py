"""NYSE trading days from a calendar written out by hand (the exchange's published holidays), so
tests expect sessions from something other than the project's own calendar (exchange_calendars).
Early closes are sessions; the day of national mourning for President Carter (2025-01-09) is not."""

from __future__ import annotations

import datetime as dt

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
