"""Events in ``events``: CSV import (validated whole before anything is written) and the
queries that select what a valuation run must (re)value.

Import streams the file twice: once to validate every line (so a bad file is rejected whole,
with every bad line number and reason), once to COPY into a temp table and insert with
``ON CONFLICT DO NOTHING`` (so re-importing adds nothing). Memory stays flat for any file size.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from tasks.core.db import database_errors
from tasks.core.errors import BadInput
from tasks.core.tickers import Shard, validate_ticker
from tasks.core.time_bounds import EARLIEST_TIME, LATEST_TIME
from tasks.prices.changes import change_reaches

REQUIRED_COLUMNS = ("ticker", "event_time", "source")
# Event times this project can value (tasks/core/types.py says why these bounds).
EARLIEST_EVENT, LATEST_EVENT = EARLIEST_TIME, LATEST_TIME
MAX_SHOWN_BAD = 50
MAX_SOURCE_LEN = 200
MAX_LINE_CHARS = 1 << 16

# Pending: never valued, failed, valued before its forward prices existed, or valued before a
# change to the stored bars (its own or SPY's) within 45 days of it (the metrics' whole window:
# 21 bars back, 20 ahead): a restated adj_close history or a revised recent bar.
_REACHED = change_reaches("c", "events")
PENDING = sql.SQL(
    "(valuation_status IN ('pending', 'error') OR (valuation_status = 'ok' AND "  # noqa: S608 (constant text)
    "(ret_20d IS NULL OR excess_ret_20d IS NULL OR volume_ratio IS NULL))"
    " OR EXISTS (SELECT 1 FROM price_changes c WHERE " + _REACHED + "))"
)


@dataclass(frozen=True)
class BadRow:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportResult:
    rows: int = 0
    inserted: int = 0
    bad: list[BadRow] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        return self.rows - self.inserted


def parse_event_time(text: str) -> dt.datetime:
    """ISO-8601 with an offset (``2025-08-28 10:25:00+00:00``, ``...T10:25:00Z``) → aware UTC datetime.

    Raises:
        ValueError: unparsable, no offset (a naive time is ambiguous), an offset beyond +-15:59
            (PostgreSQL refuses it), or a time outside 1900..2199.
    """
    value = dt.datetime.fromisoformat(text.strip())
    offset = value.utcoffset()
    if value.tzinfo is None or offset is None:
        raise ValueError("time has no UTC offset")
    if abs(offset) >= dt.timedelta(hours=16):
        raise ValueError("UTC offset beyond +-15:59")
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("out of range") from None
    if not EARLIEST_EVENT <= utc < LATEST_EVENT:
        raise ValueError(f"out of range ({EARLIEST_EVENT.year}..{LATEST_EVENT.year - 1})")
    return utc


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data line; header checked first.

    Raises:
        BadInput: unreadable file, not UTF-8, or a required column missing.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a device or FIFO (/dev/zero) would never end
            raise BadInput(f"{path} is not a regular file")
        # utf-8-sig: a byte-order mark (what Excel writes) is not part of the first column's name
        fh = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 (closed in finally)
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from exc
    try:
        # strict: a quote left open fails instead of swallowing the rows after it
        reader = csv.DictReader(_bounded_lines(fh, path), strict=True)
        try:
            header = reader.fieldnames
        except UnicodeDecodeError as exc:
            raise BadInput(f"{path} is not UTF-8 text (byte {exc.start} of the header)") from exc
        except OSError as exc:
            raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from exc
        if not header:
            raise BadInput(f"{path} is empty: expected a header line {','.join(REQUIRED_COLUMNS)}")
        names = [h.strip().lower() for h in header]
        # Only the columns we know are ever named back: the file may be anything readable (a
        # password file, say), and the message may end in a Prefect state anyone can read.
        twice = sorted({n for n in names if names.count(n) > 1 and n in REQUIRED_COLUMNS})
        if twice:
            raise BadInput(f"{path}: column(s) {', '.join(twice)} appear more than once in the header")
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise BadInput(f"{path}: missing column(s) {', '.join(missing)} in its first line: {_header_found(names)}; "
                           f"an events file starts with the header {','.join(REQUIRED_COLUMNS)}")
        reader.fieldnames = names
        try:
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError as exc:
            raise BadInput(f"{path} is not UTF-8 text (after line {reader.line_num})") from exc
        except csv.Error as exc:  # the row that failed is not counted in line_num yet
            raise BadInput(f"{path}: malformed CSV at line {reader.line_num + 1}: {exc}") from exc
        except OSError as exc:  # a read error mid-file (a failing disk): nothing of the file is imported
            raise BadInput(f"cannot read {path} after line {reader.line_num}: {exc.strerror or exc}") from exc
    finally:
        fh.close()


def _header_found(names: list[str]) -> str:
    """What a header holds, naming only the columns we know (the rest counted, never shown)."""
    known = [n for n in names if n in REQUIRED_COLUMNS]
    others = len(names) - len(known)
    shown = [f"found {', '.join(known)}"] if known else ["found none of them"]
    return " ".join(shown + ([f"and {others} other column(s), not shown"] if others else []))


def _bounded_lines(fh: Any, path: Path) -> Iterator[str]:
    """The file's lines, none longer than ``MAX_LINE_CHARS`` (memory stays flat whatever the file holds).

    Raises:
        BadInput: a longer line (no events file has one).
    """
    number = 0
    while line := fh.readline(MAX_LINE_CHARS + 1):
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise BadInput(f"{path}: line {number} is longer than {MAX_LINE_CHARS:,} characters")
        yield line


def _check(line: int, row: dict[str, Any]) -> tuple[str, dt.datetime, str] | BadRow:
    if None in row or any(row.get(c) is None for c in REQUIRED_COLUMNS):
        return BadRow(line, "wrong number of fields")
    if any("\x00" in str(row[c]) for c in REQUIRED_COLUMNS):
        return BadRow(line, "NUL byte in a field")
    try:
        ticker = validate_ticker(row["ticker"])
    except BadInput:
        return BadRow(line, f"bad ticker {row['ticker'][:40]!r}")
    try:
        when = parse_event_time(row["event_time"])
    except ValueError as exc:
        return BadRow(line, f"bad event_time {row['event_time'][:40]!r} ({exc})")
    source = row["source"].strip()
    if len(source) > MAX_SOURCE_LEN:
        return BadRow(line, f"source longer than {MAX_SOURCE_LEN} characters")
    return ticker, when, source


def validate_csv(path: Path) -> tuple[int, list[BadRow]]:
    """Count the data rows and list every bad one (first pass; writes nothing)."""
    count = 0
    bad: list[BadRow] = []
    for line, row in _rows(path):
        count += 1
        checked = _check(line, row)
        if isinstance(checked, BadRow):
            bad.append(checked)
    return count, bad


def describe_bad(bad: list[BadRow]) -> str:
    shown = "; ".join(str(b) for b in bad[:MAX_SHOWN_BAD])
    more = f"; and {len(bad) - MAX_SHOWN_BAD} more" if len(bad) > MAX_SHOWN_BAD else ""
    return f"{len(bad)} bad row(s): {shown}{more}"


def check_csv(path: Path, *, skip_bad_rows: bool) -> tuple[int, list[BadRow]]:
    """First pass: (rows, bad rows); raises unless the file may be imported.

    Raises:
        BadInput: the file has bad rows and ``skip_bad_rows`` is False, or is unusable.
    """
    rows, bad = validate_csv(path)
    if bad and not skip_bad_rows:
        raise BadInput(f"{path} rejected, nothing imported: {describe_bad(bad)} (use --skip-bad-rows to import the good rows)")
    return rows, bad


def import_csv(
    conn: psycopg.Connection[Any], path: Path, *, skip_bad_rows: bool = False, checked: tuple[int, list[BadRow]] | None = None
) -> ImportResult:
    """Validate the whole file (unless ``checked`` by ``check_csv``), then load its good rows into
    ``events`` in one transaction.

    Raises:
        BadInput: the file has bad rows and ``skip_bad_rows`` is False (nothing is written),
            or the file itself is unusable.
        StoreError: PostgreSQL refused the load (nothing is written).
    """
    rows, bad = checked if checked is not None else check_csv(path, skip_bad_rows=skip_bad_rows)
    result = ImportResult(rows=rows - len(bad), bad=bad)
    with database_errors(f"importing {path} failed"):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE stage_events (ticker text, event_time timestamptz, source text) ON COMMIT DROP")
            with cur.copy("COPY stage_events (ticker, event_time, source) FROM STDIN") as copy:
                for line, row in _rows(path):
                    good = _check(line, row)
                    if not isinstance(good, BadRow):
                        copy.write_row(good)
            cur.execute(
                "INSERT INTO events (ticker, event_at, source) SELECT DISTINCT ticker, event_time, source FROM stage_events"
                " ON CONFLICT (ticker, event_at, source) DO NOTHING"
            )
            result.inserted = cur.rowcount
    return result


@dataclass(frozen=True)
class TickerWork:
    """One ticker's pending events: how many, and the time span they cover."""

    ticker: str
    events: int
    first: dt.datetime
    last: dt.datetime


def pending_by_ticker(conn: psycopg.Connection[Any], *, overwrite: bool, tickers: list[str] | None,
                      before: dt.datetime | None = None) -> list[TickerWork]:
    """Per ticker, the events this run must value (all of them with ``overwrite``), of those before
    ``before`` (later ones wait for their base session: ``next_close``)."""
    where: sql.Composable = sql.SQL("TRUE") if overwrite else PENDING
    if tickers:
        where = sql.SQL("{} AND ticker = ANY(%(tickers)s)").format(where)
    if before is not None:
        where = sql.SQL("{} AND event_at < %(before)s").format(where)
    query = sql.SQL(
        "SELECT ticker, count(*), min(event_at), max(event_at) FROM events WHERE {} GROUP BY ticker ORDER BY ticker"
    ).format(where)
    rows = conn.execute(query, {"tickers": tickers, "before": before}).fetchall()
    return [TickerWork(t, int(n), a, b) for t, n, a, b in rows]


def waiting_for_their_session(conn: psycopg.Connection[Any], before: dt.datetime, tickers: list[str] | None) -> int:
    """How many unvalued events lie at or after ``before``: their base session has not closed yet."""
    found = conn.execute("SELECT count(*) FROM events WHERE event_at >= %(before)s AND valuation_status = 'pending'"
                         " AND (%(tickers)s::text[] IS NULL OR ticker = ANY(%(tickers)s))",
                         {"before": before, "tickers": tickers}).fetchone()
    return int(found[0]) if found else 0


CHUNK_EVENTS = 20_000  # events held in memory at once per group


def pending_chunks(conn: psycopg.Connection[Any], tickers: list[str], *, overwrite: bool, before: dt.datetime | None = None,
                   size: int = CHUNK_EVENTS) -> Iterator[pd.DataFrame]:
    """The pending events of ``tickers`` (event_id, ticker, event_time as datetime64 UTC), ``size`` at a
    time, through a server-side cursor: memory does not grow with the number of events.
    Must run inside a transaction (the caller's write transaction).

    Rows come as three integers (id, the ticker's position in ``tickers``, microseconds since 1970),
    turned into columns by numpy: building a frame from datetime objects cost a tenth of a revaluation.
    """
    where: sql.Composable = sql.SQL("TRUE") if overwrite else PENDING
    if before is not None:
        where = sql.SQL("{} AND events.event_at < %(before)s").format(where)
    query = sql.SQL("SELECT events.event_id, t.i, (extract(epoch FROM events.event_at) * 1000000)::int8 FROM events"
                    " JOIN unnest(%(tickers)s::text[]) WITH ORDINALITY AS t(ticker, i) ON events.ticker = t.ticker"
                    " WHERE {}").format(where)
    names = np.array(tickers, dtype=object)
    with conn.cursor(name=f"pending_{id(tickers)}") as cur:
        cur.itersize = size
        cur.execute(query, {"tickers": tickers, "before": before})
        while rows := cur.fetchmany(size):
            ints = np.array(rows, dtype=np.int64)
            yield pd.DataFrame({"event_id": ints[:, 0], "ticker": names[ints[:, 1] - 1],
                                "event_time": pd.to_datetime(ints[:, 2], unit="us", utc=True)})


def shard_tickers(conn: psycopg.Connection[Any], shard: Shard | None, tickers: list[str] | None) -> list[str] | None:
    """The tickers a run may value: ``tickers`` (None: all), narrowed to ``shard``'s share of the
    tickers that have events (a list, perhaps empty, whenever a shard is given)."""
    if shard is None:
        return tickers
    names = tickers if tickers is not None else [r[0] for r in conn.execute("SELECT DISTINCT ticker FROM events")]
    return sorted(t for t in names if shard.takes(t))
