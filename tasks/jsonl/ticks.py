"""Scalp ticks at speed: the common record checked in C, each tick's identity, its COPY line, and
the batch's 1-minute bars, so PostgreSQL only stores what it is sent.

``fast_scalp_row`` decodes a line with msgspec into the usual shape, every type and range checked
in C (no coercion: a bool is not a number, ``2.0`` is not an integer); it returns None for anything
else, and that line goes through ``records.scalp_row``, which accepts or rejects it with its reason.
Both give the same row for the same tick, so which path read a line never shows.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
from typing import Annotated, Any

import msgspec

from tasks.jsonl.records import EPOCH, MAX_COUNT, parse_time

Row = tuple[Any, ...]  # records.scalp_row's columns, then the line number
_Price = Annotated[float, msgspec.Meta(ge=0, lt=99_999_999_999.0)]  # inside scalp_row's limit, never at its edge
_Count = Annotated[int, msgspec.Meta(ge=0, lt=MAX_COUNT)]


# Fields in the row's order (kw_only lets defaults sit anywhere); gc=False: only strings and numbers,
# never a cycle, so the collector need not track the millions made.
class _Tick(msgspec.Struct, kw_only=True, gc=False):
    symbol: Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
    event_time: str
    ts: str | None = None
    bid_price: _Price
    ask_price: _Price
    bid_size: _Count
    ask_size: _Count
    last_price: _Price
    volume: _Count
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
    mitigation_level: Annotated[int, msgspec.Meta(gt=-1_000_000, lt=1_000_000)] = 0
    quality_flag: Annotated[str, msgspec.Meta(min_length=1, max_length=20)] = "normal"


_decode = msgspec.json.Decoder(_Tick).decode
_as_row = msgspec.structs.astuple
_Failed = (msgspec.DecodeError, msgspec.ValidationError)


def fast_scalp_row(body: bytes) -> Row | None:
    """The row ``records.scalp_row`` would build from this line, or None when only it can tell."""
    try:
        row = _as_row(_decode(body))
    except _Failed:
        return None
    event = _times[row[1]]
    ts = None if row[2] is None else _times[row[2]]
    if isinstance(event, str) or isinstance(ts, str) or "\x00" in row[0] or "\x00" in row[9] or "\x00" in row[11]:
        return None
    if event[0] is not row[1] or (ts is not None and ts[0] is not row[2]):  # a time PostgreSQL gets in Python's spelling
        return (row[0], event[0], None if ts is None else ts[0], *row[3:])
    return row


def scaled_price(value: float | int) -> int:
    """A price as PostgreSQL's numeric(15,4) stores it, times 10,000: its shortest decimal spelling
    rounded half away from zero (what the column does with the text it is sent)."""
    exact = decimal.Decimal(repr(value)).quantize(decimal.Decimal("0.0001"), rounding=decimal.ROUND_HALF_UP)
    return int(exact.scaleb(4))


class _Memo(dict[Any, Any]):
    """A bounded memo (a dict lookup is what a tick can afford): ticks repeat their timestamps,
    prices and names."""

    def __init__(self, compute: Any) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, key: Any) -> Any:
        if len(self) >= 1 << 16:
            self.clear()
        value = self[key] = self.compute(key)
        return value


_times = _Memo(parse_time)


def _checked_micros(text: str) -> int:
    parsed = _times[text]
    assert not isinstance(parsed, str)  # only a checked row's times get here
    return parsed[1]


_micros = _Memo(_checked_micros)  # a plain lookup for the per-tick loops, from the one parse above
_price = _Memo(lambda v: (repr(v), str(scaled_price(v))))  # (COPY text, canonical text)
copy_text = _Memo(lambda v: v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r"))
_NULL = "\\N"


def keyed_copy_lines(rows: list[Row], source_file: str) -> list[tuple[str, str]]:
    """Each tick's (key, COPY text line of ``SCALP_COLUMNS``).

    The key is its identity as 32 hex digits (a uuid to PostgreSQL): the event time in milliseconds
    (48 bits, so keys arrive in about the order the unique index keeps them: cheap to insert), then
    80 bits of SHA-256 over its values as stored (times in microseconds, prices times 10,000),
    NUL-separated. Copies of a tick, however spelled, have one key; the database's
    ``scalp_tick_key()`` (migration 013) computes the same from a stored row.
    """
    rel = copy_text[source_file]
    sha256 = hashlib.sha256
    heads, tails, times, prices = _heads, _tails, _times_pair, _prices
    out: list[tuple[str, str]] = []
    append = out.append
    for symbol, event_time, ts, bid, ask, bid_size, ask_size, last, volume, session, level, flag, line in rows:
        # The parts ticks share (their symbol; session, level and flag; times; prices) are spelled once each.
        key_head, copy_head = heads[symbol]
        key_tail, copy_tail = tails[session, level, flag]
        key_times, key_time, copy_times = times[event_time, ts]
        key_bid_ask, key_last, copy_bid_ask, copy_last = prices[bid, ask, last]
        canonical = f"{key_head}{key_times}{key_bid_ask}{bid_size}\x00{ask_size}\x00{key_last}\x00{volume}{key_tail}"
        key = key_time + sha256(canonical.encode()).hexdigest()[:20]
        append((key, f"{copy_head}{copy_times}{copy_bid_ask}{bid_size}\t{ask_size}\t{copy_last}\t{volume}{copy_tail}"
                     f"{line}\t{rel}\t{key}\n"))
    return out


def _time_key(text: str) -> tuple[int, str]:
    """A checked time's microseconds and the key's first 12 hex digits (its milliseconds, 48 bits)."""
    micros = _micros[text]
    return micros, ((micros // 1000) % (1 << 48)).to_bytes(6, "big").hex()


_heads = _Memo(lambda symbol: (f"{symbol}\x00", f"{copy_text[symbol]}\t"))
_tails = _Memo(lambda t: (f"\x00{t[0]}\x00{t[1]}\x00{t[2]}", f"\t{copy_text[t[0]]}\t{t[1]}\t{copy_text[t[2]]}\t"))
_time_keys = _Memo(_time_key)


def _time_pair(times: tuple[str, str | None]) -> tuple[str, str, str]:
    """(event time, ts): their part of the key's input, the key's first 12 hex digits, their COPY text."""
    event_time, ts = times
    micros, key_time = _time_keys[event_time]
    return f"{micros}\x00{'' if ts is None else _time_keys[ts][0]}\x00", key_time, f"{event_time}\t{_NULL if ts is None else ts}\t"


def _price_triple(prices: tuple[float, float, float]) -> tuple[str, str, str, str]:
    """(bid, ask, last): bid and ask's part of the key's input, last's, then the same for COPY."""
    (bid_text, bid_canon), (ask_text, ask_canon), (last_text, last_canon) = (_price[v] for v in prices)
    return f"{bid_canon}\x00{ask_canon}\x00", last_canon, f"{bid_text}\t{ask_text}\t", last_text


_times_pair = _Memo(_time_pair)
_prices = _Memo(_price_triple)


def minute_bars(rows: list[Row]) -> list[tuple[Any, ...]]:
    """The 1-minute bars of one file's newly stored ticks (rows in line order), as
    ``sql/merge_1m_bars.sql`` takes them: open/close are the first/last tick by (event time, line),
    the session the closing tick's, the quality flags other than 'normal' listed for PostgreSQL to
    pick the greatest in its own collation."""
    bars: dict[tuple[str, int], list[Any]] = {}
    for r in rows:
        symbol, event_time, last, volume, session, level, flag, line = r[0], r[1], r[7], r[8], r[9], r[10], r[11], r[12]
        micros = _micros[event_time]
        key = (symbol, micros // 60_000_000)
        bar = bars.get(key)
        if bar is None:
            bars[key] = [last, last, last, last, volume, 1, session, level, set() if flag == "normal" else {flag},
                         micros, event_time, line, micros, event_time, line]
            continue
        if micros < bar[9]:  # lines come in order: an equal time keeps the earlier line
            bar[0], bar[9], bar[10], bar[11] = last, micros, event_time, line
        if micros >= bar[12]:
            bar[3], bar[6], bar[12], bar[13], bar[14] = last, session, micros, event_time, line
        if last > bar[1]:
            bar[1] = last
        if last < bar[2]:
            bar[2] = last
        bar[4] += volume
        bar[5] += 1
        if level > bar[7]:
            bar[7] = level
        if flag != "normal":
            bar[8].add(flag)
    return [(symbol, EPOCH + dt.timedelta(minutes=minute), *b[:8], sorted(b[8]), b[10], b[11], b[13], b[14])
            for (symbol, minute), b in sorted(bars.items())]
