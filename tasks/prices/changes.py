"""Which events a change to stored bars reaches: the one rule the valuation's "pending" and
retention's "keep this change" share (a change is logged in ``price_changes`` by ``store``)."""

from __future__ import annotations


def change_reaches(change: str, event: str) -> str:
    """SQL (constant text): the ``price_changes`` row ``change`` makes the ``events`` row ``event``
    pending again: made after it was valued, to its ticker's bars or SPY's, within 45 days of it.
    Retention keeps a change while this holds for some event (``tasks/pipeline/retention.py``)."""
    day = f"({event}.event_at AT TIME ZONE 'America/New_York')::date"
    return (f"{change}.changed_at > {event}.valued_at"
            f" AND (({change}.table_name = 'stock_daily_bars' AND {change}.ticker = {event}.ticker)"
            f" OR ({change}.table_name = 'etf_daily_bars' AND {change}.ticker = 'SPY'))"
            f" AND {change}.first_date <= {day} + 45 AND {change}.last_date >= {day} - 45")
