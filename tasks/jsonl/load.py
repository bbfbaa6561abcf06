"""Loading one JSONL file into PostgreSQL, in batches that each commit with the file's checkpoint.

Python parses each line (msgspec, in C) and checks it (``jsonl_records``); the good rows go to a
temp table with one COPY and into the target with one ``INSERT ... ON CONFLICT`` per batch
(``sql/load_<kind>.sql``), the bad ones to ``jsonl_rejects`` with their reason. Only complete lines are loaded:
a last line without its newline is
left for the next run (its writer may still be writing it). A kill at any moment loses at most
the batch in flight, which the next run loads again from the checkpoint.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import msgspec
import psycopg

from tasks.core.db import database_errors
from tasks.core.errors import SourceError
from tasks.core.sql_files import statement
from tasks.jsonl.files import FilePlan, JsonlFile, Kind, Piece, plan_files
from tasks.jsonl.origins import EMPTY_SHA256, file_time
from tasks.jsonl.partitions import days_of_keys, ensure_days, is_tick_key_violation
from tasks.jsonl.records import ROW_BUILDERS, Reject
from tasks.jsonl.ticks import Row, fast_scalp_row, keyed_copy_lines, minute_bars

_MAX_LINE = 1 << 20
_decode = msgspec.json.Decoder().decode  # any JSON value; records.py checks what it must be
# Batches merge into the 1-minute bars under this lock in shared mode (side by side: the row lock
# of ON CONFLICT keeps each merge whole); recomputing bars after a reload takes it exclusively, so
# it never interleaves with a merge into the same minute.
BARS_LOCK = 0x4A534D42
# Likewise for the swing bars: a batch's versions and upserts take it shared; deciding again the bars a
# file had won (keep_swing, forget_swing) takes it alone, so the versions it chooses among include
# every batch committed, none in flight (a batch committed while that statement ran was invisible to it,
# and its bar went to the kept version although a dated file's version had been stored).
SWING_LOCK = 0x4A535357
SCALP_COLUMNS = ("ticker, event_at, written_at, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id, "
                 "mitigation_level, quality_flag, source_line, source_file, tick_key")
_ROW_TABLES: dict[Kind, str] = {"swing": "observer_bars_10m", "scalp": "observer_ticks", "gap": "observer_gaps"}


@dataclass
class FileResult:
    rel: str
    kind: Kind
    action: str
    lines: int = 0
    loaded: int = 0
    rejected: int = 0
    incomplete_tail: bool = False
    bytes_read: int = 0
    seconds: float = 0.0
    retries: int = 0  # transient database failures this file was loaded through
    copies: int = 0  # ticks already stored from another file (or earlier in this one): kept as copies
    pieces: int = 1  # loaded by this many processes at once (a big file)
    minutes: set[tuple[str, dt.datetime]] = field(default_factory=set)  # (symbol, minute) of the ticks stored: the coverage to judge
    kept: tuple[int, str] | None = None  # a changed file: what its earlier content stored, kept (rows, provenance now)
    days: set[dt.date] = field(default_factory=set)  # UTC days of the ticks its lines carry
    rejects: list[tuple[int, str]] = field(default_factory=list)


def load_file(conn: psycopg.Connection[Any], plan: FilePlan, *, batch_size: int = 10_000) -> FileResult:
    """Load what ``plan`` says of one file (see module doc), or of one piece of it; ``conn`` must be
    in autocommit mode.

    Raises:
        StoreError: PostgreSQL refused a batch (earlier batches stay committed with their checkpoint).
    """
    if plan.piece is not None:
        return _load_piece(conn, plan, batch_size)
    started = time.perf_counter()
    f = plan.file
    result = FileResult(f.rel, f.kind, plan.action)
    if plan.action == "skip":
        return result
    if not take_file_lock(conn, f.key):
        result.action = "busy (another run is loading it)"
        return result
    try:
        plan = prepare_file(conn, plan)
        result.action, result.kept = plan.action, plan.kept
        if plan.action == "skip":
            return result
        start_byte, line_no = (plan.start_byte, plan.start_line) if plan.action == "append" else (0, 0)
        with database_errors(f"loading {f.rel} failed"):
            _read_and_store(conn, plan.file, start_byte, line_no, None, batch_size, result, always_flush=plan.action != "append")
    finally:
        release_file_lock(conn, f.key)
    result.seconds = time.perf_counter() - started
    return result


def take_file_lock(conn: psycopg.Connection[Any], key: str) -> bool:
    """The file's session lock, so two runs never load one file at once; False when another run has it."""
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(key),)).fetchone()
    return bool(got and got[0])


def release_file_lock(conn: psycopg.Connection[Any], key: str) -> None:
    if not conn.closed and not conn.broken:
        conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(key),))


def prepare_file(conn: psycopg.Connection[Any], plan: FilePlan) -> FilePlan:
    """Under the file's lock: plan it again on its size now (another run may have loaded it since, or
    it grew), and clear what an interrupted run left past the checkpoint (the pieces of a big file).
    A file whose loaded content changed keeps what that content stored (``keep_earlier_content``);
    a gap log is loaded afresh (its rows have no identity of their own that a reload could match),
    and so is a file an upgrade asked to reload (the same content, read by newer rules)."""
    f = plan.file
    try:
        f = dataclasses.replace(f, size=f.path.stat().st_size)
        (plan,) = plan_files(conn, [f])
    except OSError as exc:  # that file fails; the run goes on with the others
        raise SourceError(f.rel, f"cannot read it: {exc.strerror}") from None
    with database_errors(f"loading {f.rel} failed"):
        if plan.action == "reload" and plan.changed and f.kind != "gap":
            plan = dataclasses.replace(plan, kept=keep_earlier_content(conn, f))
        elif plan.action == "reload":
            forget_file(conn, f.key, f.kind)
        elif plan.action != "skip" and f.kind == "scalp":
            forget_lines(conn, f.key, after=plan.start_line if plan.action == "append" else 0)
    return plan


def _load_piece(conn: psycopg.Connection[Any], plan: FilePlan, batch_size: int) -> FileResult:
    """One piece of a big file (its run holds the file's lock). Tried again after a failure, it
    first removes what its earlier attempt stored: the first piece from the checkpoint its
    batches moved, the others from their start."""
    started = time.perf_counter()
    piece, f = plan.piece, plan.file
    assert piece is not None
    result = FileResult(f.rel, f.kind, plan.action)
    start, lines_before = piece.start, piece.lines_before
    with database_errors(f"loading {f.rel} failed"):
        if piece.first:
            row = conn.execute("SELECT bytes_loaded, lines_loaded FROM jsonl_file_checkpoints WHERE source_file = %s",
                               (f.key,)).fetchone()
            if row is not None and piece.start <= row[0] <= piece.end:
                start, lines_before = int(row[0]), int(row[1])
        forget_lines(conn, f.key, after=lines_before, upto=piece.last_line)
        _read_and_store(conn, f, start, lines_before, piece, batch_size, result, always_flush=False)
    result.seconds = time.perf_counter() - started
    return result


def _read_and_store(conn: psycopg.Connection[Any], f: JsonlFile, start_byte: int, line_no: int, piece: Piece | None, batch_size: int,
                    result: FileResult, *, always_flush: bool) -> None:
    """Read whole lines from ``start_byte`` (to the piece's end, or the file's last complete line)
    and store them batch by batch, each batch committed with the checkpoint (unless this is a
    piece other than the first)."""
    checkpoint = piece is None or piece.first
    digest: Any = hashlib.sha256() if checkpoint else None
    batch: list[bytes] = []  # lines line_no - len(batch) + 1 .. line_no
    unhashed: list[bytes] = []  # lines not yet added to the digest: one update a batch, not one a line
    consumed = start_byte
    stop = piece.end if piece is not None else None
    try:
        fh = f.path.open("rb")
    except OSError as exc:  # that file fails; the run goes on with the others
        raise SourceError(f.rel, f"cannot read it: {exc.strerror}") from None
    with fh:
        if digest is not None:
            left = start_byte
            while left > 0:  # the hash of the loaded prefix continues from here
                chunk = fh.read(min(1 << 20, left))
                digest.update(chunk)
                left -= len(chunk)
        else:
            fh.seek(start_byte)
        readline = fh.readline
        while raw := readline(_MAX_LINE + 1):  # never more than a line's limit in memory
            length = len(raw)
            if raw[-1] != 10:  # no newline
                if length <= _MAX_LINE:  # its writer may still be writing it: the next run loads it
                    result.incomplete_tail = True
                    break
                digest = _hashed(digest, unhashed)
                skipped = _skip_rest_of_line(fh, digest, raw)  # too long: keep its head (rejected), hash it all
                if skipped is None:
                    result.incomplete_tail = True
                    break
                digest, length = skipped[0], length + skipped[1]
            else:
                unhashed.append(raw)
            line_no += 1
            consumed += length
            batch.append(raw)
            if len(batch) >= batch_size:
                _flush(conn, f, batch, consumed, line_no, _hashed(digest, unhashed), result)
                batch = []
            if stop is not None and consumed >= stop:
                break
        if batch or always_flush:
            _flush(conn, f, batch, consumed, line_no, _hashed(digest, unhashed), result)
    result.bytes_read = consumed - start_byte


def _hashed(digest: Any, unhashed: list[bytes]) -> Any:
    """``digest`` with the lines in ``unhashed`` added (and that list emptied); None stays None."""
    if digest is not None and unhashed:
        digest.update(b"".join(unhashed))
    unhashed.clear()
    return digest


def _skip_rest_of_line(fh: BinaryIO, digest: Any, head: bytes) -> tuple[Any, int] | None:
    """After ``head``, the first ``_MAX_LINE + 1`` bytes of an over-long line: read on to its newline in
    bounded chunks. Returns a new digest with the whole line added (``digest`` is left as it was)
    and how many bytes followed ``head``, or None when the file ends first (the line is incomplete:
    nothing of it counts yet, and the caller's digest still ends before it)."""
    pending = digest.copy() if digest is not None else None
    if pending is not None:
        pending.update(head)
    more = 0
    while chunk := fh.readline(1 << 20):
        if pending is not None:
            pending.update(chunk)
        more += len(chunk)
        if chunk.endswith(b"\n"):
            return pending, more
    return None


_NOT_JSON = ("invalid JSON", "not UTF-8 text", "line longer than 1 MiB")


def _shown(body: bytes, reason: str) -> str:
    """What ``jsonl_rejects.raw`` keeps of a rejected line: a JSON record up to 2,000 characters (to
    see what was wrong with it); of anything else (a binary file, a secret that is not ours) only
    its length and a short head."""
    if reason in _NOT_JSON:
        size = f"more than {_MAX_LINE:,}" if len(body) > _MAX_LINE else f"{len(body):,}"
        return f"[{size} bytes] " + body[:40].decode("utf-8", "replace").replace("\x00", "")
    return body[:2000].decode("utf-8", "replace").replace("\x00", "")


def lock_key(key: str) -> int:
    """The advisory-lock key of a file: 64 bits of BLAKE2b (PostgreSQL's 32-bit ``hashtext`` made two
    real file names share a lock, and one of them was skipped as "busy")."""
    return int.from_bytes(hashlib.blake2b(f"jsonl:{key}".encode(), digest_size=8).digest(), "big", signed=True)


def _parse_lines(batch: list[bytes], first_line: int, kind: Kind) -> tuple[list[tuple[Any, ...]], list[tuple[int, str, str]]]:
    """A batch's lines (numbered from ``first_line``) checked and typed: the rows (values, then the
    line number) and the rejects (line, reason, what ``jsonl_rejects.raw`` keeps). Blank lines are
    neither."""
    build = ROW_BUILDERS[kind]
    built: list[tuple[Any, ...]] = []
    rejects: list[tuple[int, str, str]] = []
    fast = fast_scalp_row if kind == "scalp" else None
    for n, raw in enumerate(batch, first_line):
        # A whole line ends with its newline (JSON whitespace, as a CR before it); the head of an
        # over-long line does not, and is never read as a record.
        if fast is not None and raw[-1] == 10 and (row := fast(raw)) is not None:
            built.append((*row, n))
            continue
        body = raw.rstrip(b"\r\n")
        if not body.strip():
            continue  # blank line: nothing to load, nothing wrong
        try:
            if len(body) > _MAX_LINE:
                raise Reject("line longer than 1 MiB")
            try:
                record = _decode(body)
            except msgspec.DecodeError:
                raise Reject("not UTF-8 text" if not _is_utf8(body) else "invalid JSON") from None
            if not isinstance(record, dict):
                raise Reject("not a JSON object")
            built.append((*build(record), n))
        except Reject as why:
            rejects.append((n, str(why), _shown(body, str(why))))
    return built, rejects


def _flush(conn: psycopg.Connection[Any], f: JsonlFile, batch: list[bytes], consumed: int, line_no: int,
           digest: Any, result: FileResult) -> None:
    """One batch: check and type the lines, COPY the rows, insert them and the rejects, refresh
    1-minute bars, move the checkpoint; one transaction."""
    file_key, kind = f.key, f.kind
    built, rejects = _parse_lines(batch, line_no - len(batch) + 1, kind)
    loaded = 0
    copies: list[tuple[int, str]] = []
    keyed = keyed_copy_lines(built, file_key) if built and kind == "scalp" else []
    days = days_of_keys(key for key, _ in keyed)
    if days:  # the days' partitions, each made in its own short transaction before the batch's
        ensure_days(conn, days)
    result.days |= days
    with conn.transaction(), conn.cursor() as cur:
        # The checkpoint commits with the rows, so a commit lost to a crash is simply loaded again:
        # no need to wait for each batch's WAL flush.
        cur.execute("SET LOCAL synchronous_commit = off")
        if built and kind == "scalp":
            # Straight into the table: the checkpoint commits with these rows, so a line is never
            # sent twice (and the unique (source_file, source_line) key would refuse it if it were).
            stored, copies = _store_ticks(cur, built, keyed)
            loaded = len(stored)
            if copies:
                cur.executemany("INSERT INTO scalp_tick_copies (source_file, source_line, tick_key) VALUES (%s, %s, %s)"
                                " ON CONFLICT (source_file, source_line) DO UPDATE SET tick_key = EXCLUDED.tick_key",
                                [(file_key, n, key) for n, key in copies])
        elif built:  # swing rows upsert on (ticker, polled_at); gaps are few
            good = io.StringIO()
            csv.writer(good, lineterminator="\n").writerows(built)
            cur.execute(statement(f"stage_{kind}"))
            with cur.copy(f"COPY stage_{kind} FROM STDIN (FORMAT csv)") as copy:
                copy.write(good.getvalue())
            if kind == "swing":
                cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (SWING_LOCK,))
                cur.execute(statement("version_swing"), {"file": file_key})
            cur.execute(statement(f"load_{kind}"), {"file": file_key, "file_time": file_time(f.rel)})
            loaded = cur.rowcount
            cur.execute(f"DROP TABLE stage_{kind}")
        if rejects:
            cur.executemany(
                "INSERT INTO jsonl_rejects (source_file, source_line, reason, raw) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (source_file, source_line) DO UPDATE SET reason = EXCLUDED.reason, raw = EXCLUDED.raw,"
                " rejected_at = now()",
                [(file_key, n, reason, raw) for n, reason, raw in rejects],
            )
        if kind == "scalp" and loaded:
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (BARS_LOCK,))  # merges run side by side
            bars = minute_bars(stored)
            cur.execute(statement("merge_1m_bars"), _bar_params(file_key, bars))
            result.minutes.update((bar[0], bar[1]) for bar in bars)
        if digest is not None:  # None: a piece past the first, whose rows the checkpoint covers once every piece is in
            write_checkpoint(cur, f, consumed, line_no, digest.copy().hexdigest(), days)
    result.lines += len(batch)
    result.loaded += loaded
    result.copies += len(copies)
    result.rejected += len(rejects)
    result.rejects.extend((n, reason) for n, reason, _ in rejects[: max(0, 50 - len(result.rejects))])


def write_checkpoint(cur: psycopg.Cursor[Any], f: JsonlFile, bytes_loaded: int, lines: int, sha256: str,
                     days: Iterable[dt.date] = ()) -> None:
    """Move a file's checkpoint, adding ``days`` to the UTC days its ticks are on (``lost_days.py``)."""
    cur.execute(statement("write_checkpoint"), {"file": f.key, "kind": f.kind, "bytes": bytes_loaded, "lines": lines, "sha": sha256,
                                                "size": f.size, "origin": f.origin, "rel": f.rel, "file_time": file_time(f.rel),
                                                "days": sorted(days)})


def _store_ticks(cur: psycopg.Cursor[Any], built: list[Row], keyed: list[tuple[str, str]]) -> tuple[list[Row], list[tuple[int, str]]]:
    """COPY a batch's ticks (row values + line number; ``keyed``: their keys and COPY lines) into
    ``observer_ticks``; returns the rows stored and the copies (line, key) of ticks already stored, by
    this batch or before, which are not.

    Optimistic: the new ticks go in under a savepoint; only when the unique ``tick_key`` refuses them
    (a copy of a stored tick: rare; or another loader storing the same tick at this moment, whose
    commit the refusal waited for) are the stored keys looked up and the batch split again.
    """
    stored: set[str] = set()
    while True:
        fresh, copies = _fresh_ticks(built, keyed, stored)
        if not fresh:
            return [], copies
        every = len(fresh) == len(keyed)  # the usual batch: no list of the chosen ones to build
        try:
            with cur.connection.transaction():  # a savepoint inside the batch's transaction
                with cur.copy(f"COPY observer_ticks ({SCALP_COLUMNS}) FROM STDIN") as copy:
                    copy.write("".join([line for _, line in keyed] if every else [keyed[i][1] for i in fresh]))
                return (built if every else [built[i] for i in fresh]), copies
        except psycopg.errors.UniqueViolation as exc:
            if not is_tick_key_violation(exc):
                raise
        cur.execute("SELECT tick_key FROM observer_ticks WHERE tick_key = ANY(%s::uuid[])", ([keyed[i][0] for i in fresh],))
        stored |= {r[0].hex for r in cur.fetchall()}


def _fresh_ticks(built: list[Row], keyed: list[tuple[str, str]], stored: set[str]) -> tuple[list[int], list[tuple[int, str]]]:
    """The indexes of the ticks to store (each key's first, unless ``stored`` holds it) and the
    copies (line, key) of the others."""
    if not stored and len({key for key, _ in keyed}) == len(keyed):  # the usual batch: every tick new
        return list(range(len(keyed))), []
    fresh: list[int] = []
    copies: list[tuple[int, str]] = []
    seen = set(stored)
    for i, (key, _) in enumerate(keyed):
        if key in seen:
            copies.append((built[i][-1], key))
        else:
            seen.add(key)
            fresh.append(i)
    return fresh, copies


def _bar_params(rel: str, bars: list[tuple[Any, ...]]) -> dict[str, Any]:
    """``sql/merge_1m_bars.sql``'s arrays from ``minute_bars``; prices spelled as the ticks were sent."""
    columns = list(zip(*bars, strict=True))
    return {"file": rel, "symbol": list(columns[0]), "bar_time": list(columns[1]), "open": [repr(v) for v in columns[2]],
            "high": [repr(v) for v in columns[3]], "low": [repr(v) for v in columns[4]], "close": [repr(v) for v in columns[5]],
            "volume": list(columns[6]), "ticks": list(columns[7]), "session": list(columns[8]), "level": list(columns[9]),
            "flags": [msgspec.json.encode(f).decode() if f else None for f in columns[10]], "open_time": list(columns[11]),
            "open_line": list(columns[12]), "close_time": list(columns[13]), "close_line": list(columns[14])}


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _refresh_bars(cur: psycopg.Cursor[Any]) -> None:
    """Recompute the 1-minute bars of the minutes in ``minutes_to_refresh`` from all stored ticks
    (under the exclusive bars lock, taken by the caller)."""
    cur.execute(
        "DELETE FROM observer_bars_1m b USING (SELECT DISTINCT symbol, bar_time FROM minutes_to_refresh) m"
        " WHERE b.ticker = m.symbol AND b.bar_start_at = m.bar_time"
    )
    cur.execute(statement("refresh_1m_bars"))


_ALL_LINES = 2**31 - 1
_WITHIN = "source_file = %(file)s AND source_line > %(after)s AND source_line <= %(upto)s"  # a file's lines after+1..upto


def forget_file(conn: psycopg.Connection[Any], key: str, kind: Kind) -> None:
    """Remove everything an earlier version of a file loaded (rows, rejects; its checkpoint back to
    byte 0), in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        if kind == "scalp":  # the ticks another file also carries stay, under that file's line
            _forget_ticks(cur, key, 0, _ALL_LINES)
        else:
            if kind == "swing":
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (SWING_LOCK,))
            cur.execute(f"DELETE FROM {_ROW_TABLES[kind]} WHERE source_file = %s", (key,))  # noqa: S608
        if kind == "swing":  # the bars this file won: back to the best version another file provides
            cur.execute(statement("forget_swing"), {"file": key})
        cur.execute("DELETE FROM jsonl_rejects WHERE source_file = %s", (key,))
        # Back to nothing loaded; the row stays: it holds the key for this file (origins.py).
        cur.execute("UPDATE jsonl_file_checkpoints SET bytes_loaded = 0, lines_loaded = 0, prefix_sha256 = %s, must_reload = NULL,"
                    " tick_days = NULL, updated_at = now() WHERE source_file = %s", (EMPTY_SHA256, key))


def keep_earlier_content(conn: psycopg.Connection[Any], f: JsonlFile) -> tuple[int, str]:
    """Before a changed file is loaded again: what its earlier content stored stays, under a
    provenance of its own (``<key>@<UTC time now>``), in one transaction; the file's checkpoint goes
    back to byte 0. Ticks are keyed by content, so the file's new lines that repeat a kept tick are
    copies of it, never a second row; a swing bar the earlier content had won is decided again
    among every version (a file's current content and other dated files win over kept content).
    Returns the rows kept (ticks or bar versions) and their provenance now."""
    kept_as = f"{f.key}@{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%S.%fZ}"
    moved = {"file": f.key, "kept_as": kept_as}
    with conn.transaction(), conn.cursor() as cur:
        if f.kind == "scalp":
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (BARS_LOCK,))
            cur.execute("UPDATE observer_ticks SET source_file = %(kept_as)s WHERE source_file = %(file)s", moved)
            rows = cur.rowcount
            cur.execute("UPDATE scalp_tick_copies SET source_file = %(kept_as)s WHERE source_file = %(file)s", moved)
            cur.execute("UPDATE observer_bars_1m SET open_file = %(kept_as)s WHERE open_file = %(file)s", moved)
            cur.execute("UPDATE observer_bars_1m SET close_file = %(kept_as)s WHERE close_file = %(file)s", moved)
        else:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (SWING_LOCK,))
            cur.execute(statement("keep_swing"), moved)
            cur.execute("SELECT count(*) FROM swing_bar_versions WHERE source_file = %(kept_as)s", moved)
            rows = int(cur.fetchone()[0])  # type: ignore[index]
        cur.execute("UPDATE jsonl_rejects SET source_file = %(kept_as)s WHERE source_file = %(file)s", moved)
        cur.execute("UPDATE jsonl_file_checkpoints SET bytes_loaded = 0, lines_loaded = 0, prefix_sha256 = %s, must_reload = NULL,"
                    " tick_days = NULL, updated_at = now() WHERE source_file = %s", (EMPTY_SHA256, f.key))
    return rows, kept_as


def forget_lines(conn: psycopg.Connection[Any], key: str, *, after: int, upto: int = _ALL_LINES) -> None:
    """Remove what lines ``after + 1`` to ``upto`` of a scalp file stored (ticks, copies, rejects; their
    minutes' bars recomputed), in one transaction. Usually there is nothing: three index probes."""
    lines = {"file": key, "after": after, "upto": upto}
    found = conn.execute(f"SELECT EXISTS (SELECT 1 FROM observer_ticks WHERE {_WITHIN}) OR EXISTS (SELECT 1 FROM scalp_tick_copies"  # noqa: S608
                         f" WHERE {_WITHIN}) OR EXISTS (SELECT 1 FROM jsonl_rejects WHERE {_WITHIN})", lines).fetchone()
    if not found or not found[0]:
        return
    with conn.transaction(), conn.cursor() as cur:
        _forget_ticks(cur, key, after, upto)
        cur.execute(f"DELETE FROM jsonl_rejects WHERE {_WITHIN}", lines)  # noqa: S608


def _forget_ticks(cur: psycopg.Cursor[Any], key: str, after: int, upto: int) -> None:
    """Delete a scalp file's ticks and copies on lines ``after + 1`` to ``upto`` (a tick another line also
    carries passes to it) and recompute their minutes' bars, under the exclusive bars lock."""
    lines = {"file": key, "after": after, "upto": upto}
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (BARS_LOCK,))
    cur.execute("CREATE TEMP TABLE minutes_to_refresh ON COMMIT DROP AS SELECT DISTINCT ticker AS symbol, date_trunc('minute', event_at)"  # noqa: S608
                f" AS bar_time FROM observer_ticks WHERE {_WITHIN}", lines)
    cur.execute(statement("forget_scalp_copies"), lines)
    cur.execute(f"DELETE FROM scalp_tick_copies WHERE {_WITHIN}", lines)  # noqa: S608
    cur.execute(f"DELETE FROM observer_ticks WHERE {_WITHIN}", lines)  # noqa: S608
    _refresh_bars(cur)
