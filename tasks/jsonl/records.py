"""Checking one JSONL record and turning it into a typed row (or the reason it is rejected).

One function per kind, fed by ``msgspec`` (C; about a microsecond a line). Checks: required fields present and
typed, times ISO-8601 **with an offset**, prices and sizes non-negative and within the column
ranges, swing OHLC consistent (low <= open, close <= high). Rows come out in the column order of
the stage tables in ``sql/stage_<kind>.sql``.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable
from typing import Any

from tasks.core.time_bounds import EARLIEST_TIME, LATEST_TIME

_PLAIN_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$")
_FINER = re.compile(r"\d\d:\d\d:\d\d\.(\d{7,})")  # a fraction of a second finer than microseconds
MAX_PRICE = 1e11  # numeric(15,4): the value as rounded to 4 places must stay below this
# bigint, with room for a minute's sum in observer_bars_1m (92,000 ticks of the largest volume)
MAX_COUNT = 10**14
MAX_OFFSET = dt.timedelta(hours=16)  # PostgreSQL refuses a UTC offset beyond +-15:59


class Reject(Exception):
    """A record that cannot be loaded; the message is the reason stored in ``jsonl_rejects``."""


_BAD_TIME = "missing or not an ISO-8601 time with offset"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_EARLIEST_MICROS = (EARLIEST_TIME - EPOCH) // _MICROSECOND
_LATEST_MICROS = (LATEST_TIME - EPOCH) // _MICROSECOND


@functools.lru_cache(maxsize=1 << 16)
def parse_time(value: str) -> tuple[str, int] | str:
    """An ISO-8601 time with offset: (its text for PostgreSQL, microseconds since 1970) or the reason
    it is refused. Cached: a file's ticks share each timestamp across its symbols."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return _BAD_TIME
    finer = _FINER.search(value)
    if finer:  # PostgreSQL rounds past microseconds (rint of the fraction as a double); Python truncates: round as it does
        parsed = parsed.replace(microsecond=0) + dt.timedelta(microseconds=round(float("0." + finer.group(1)) * 1_000_000))
    offset = parsed.utcoffset()
    if offset is None:
        return _BAD_TIME
    if abs(offset) >= MAX_OFFSET:
        return "UTC offset beyond +-15:59"
    micros = (parsed - EPOCH) // _MICROSECOND
    if not _EARLIEST_MICROS <= micros < _LATEST_MICROS:
        return f"out of range ({EARLIEST_TIME.year}..{LATEST_TIME.year - 1} in UTC)"
    # The common exact form goes to PostgreSQL as written; anything else in Python's own spelling.
    return (value if _PLAIN_TIME.match(value) else parsed.isoformat()), micros


def _time(rec: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = rec.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise Reject(f"{key}: {_BAD_TIME}")
    checked = parse_time(value)
    if isinstance(checked, str):
        raise Reject(f"{key}: {checked}")
    return checked[0]


def _price(rec: dict[str, Any], key: str, *, required: bool = True, label: str | None = None) -> float | int | None:
    value = rec.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and math.isnan(value)) or not (
            0 <= value and round(value, 4) < MAX_PRICE):
        raise Reject(f"{label or key}: missing, not a number, negative or too large")
    return value


def _count(rec: dict[str, Any], key: str) -> int:
    value = rec.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value < MAX_COUNT) or value != int(value):
        raise Reject(f"{key}: missing or not a non-negative integer")
    return int(value)


def _text(rec: dict[str, Any], key: str, max_len: int, *, required: bool = True, default: str | None = None) -> str | None:
    value = rec.get(key, default)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_len or "\x00" in value:
        raise Reject(f"{key}: missing or not a string of 1-{max_len} characters")
    return value


def scalp_row(rec: dict[str, Any]) -> tuple[Any, ...]:
    symbol = _text(rec, "symbol", 20)
    event_time = _time(rec, "event_time")
    ts = _time(rec, "ts", required=False)
    bid, ask = _price(rec, "bid_price"), _price(rec, "ask_price")
    last = _price(rec, "last_price")
    bid_size, ask_size, volume = _count(rec, "bid_size"), _count(rec, "ask_size"), _count(rec, "volume")
    session = _text(rec, "session_id", 50)
    level = rec.get("mitigation_level", 0)
    if (isinstance(level, bool) or not isinstance(level, (int, float)) or not math.isfinite(level) or level != int(level)
            or abs(level) >= 1_000_000):  # NaN and infinity: a reject, never an exception that fails the file
        raise Reject("mitigation_level: not an integer")
    flag = _text(rec, "quality_flag", 20, default="normal")
    return symbol, event_time, ts, bid, ask, bid_size, ask_size, last, volume, session, int(level), flag


def swing_row(rec: dict[str, Any]) -> tuple[Any, ...]:
    symbol = _text(rec, "symbol", 20)
    bar_time = _time(rec, "ts")
    price = rec.get("price")
    if not isinstance(price, dict):
        raise Reject("price: missing or not an object")
    o, h = _price(price, "open", label="price.open"), _price(price, "high", label="price.high")
    lo, c = _price(price, "low", label="price.low"), _price(price, "close", label="price.close")
    assert o is not None and h is not None and lo is not None and c is not None
    if h < lo:
        raise Reject("price: high < low")
    if not lo <= o <= h:
        raise Reject("price: open outside low..high")
    if not lo <= c <= h:
        raise Reject("price: close outside low..high")
    volume = _count(rec, "volume")
    bid = _price(rec, "bid_price", required=False, label="bid_price")
    ask = _price(rec, "ask_price", required=False, label="ask_price")
    session = _text(rec, "session", 50)
    dataset = _text(rec, "dataset", 50, required=False)
    market = _text(rec, "market", 50, required=False)
    source = _text(rec, "source", 50, required=False)
    return symbol, bar_time, o, h, lo, c, volume, bid, ask, session, dataset, market, source


def gap_row(rec: dict[str, Any]) -> tuple[Any, ...]:
    logged = _time(rec, "timestamp", required=False)
    start, end = _time(rec, "gap_start_ts"), _time(rec, "gap_end_ts")
    assert start is not None and end is not None
    if dt.datetime.fromisoformat(end) < dt.datetime.fromisoformat(start):
        raise Reject("gap ends before it starts")
    seconds = _price(rec, "gap_seconds", label="gap_seconds")
    session = _text(rec, "session_id", 50)
    scope = _text(rec, "scope", 20, required=False)
    reason = _text(rec, "reason", 100, required=False)
    return logged, start, end, seconds, scope, reason, session


ROW_BUILDERS: dict[str, Callable[[dict[str, Any]], tuple[Any, ...]]] = {"scalp": scalp_row, "swing": swing_row, "gap": gap_row}
