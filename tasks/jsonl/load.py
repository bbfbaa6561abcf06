"""Loading one JSONL file into PostgreSQL, in batches that each commit with the file's checkpoint.

Python parses each line (orjson, in C) and checks it (``jsonl_records``); the good rows go to a
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
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson
import psycopg

from tasks.core.db import database_errors
from tasks.core.errors import SourceError
from tasks.core.sql_files import statement
from tasks.jsonl.files import FilePlan, Kind, plan_files
from tasks.jsonl.records import ROW_BUILDERS, Reject

_MAX_LINE = 1 << 20
# Batches merge into the 1-minute bars under this lock in shared mode (side by side: the row lock
# of ON CONFLICT keeps each merge whole); recomputing bars after a reload takes it exclusively, so
# it never interleaves with a merge into the same minute.
BARS_LOCK = 0x4A534D42
SCALP_COLUMNS = ("symbol, event_time, ts, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id, "
                 "mitigation_level, quality_flag, source_line, source_file, tick_key")
_ROW_TABLES: dict[Kind, str] = {"swing": "swing_bars_10m", "scalp": "scalp_ticks", "gap": "scalp_gaps"}


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
    rejects: list[tuple[int, str]] = field(default_factory=list)


def load_file(conn: psycopg.Connection[Any], plan: FilePlan, *, batch_size: int = 10_000) -> FileResult:
    """Load what ``plan`` says of one file (see module doc); ``conn`` must be in autocommit mode.

    Raises:
        StoreError: PostgreSQL refused a batch (earlier batches stay committed with their checkpoint).
    """
    started = time.perf_counter()
    f = plan.file
    result = FileResult(f.rel, f.kind, plan.action)
    if plan.action == "skip":
        return result
    path = f.path
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(f.rel),)).fetchone()
    if not got or not got[0]:
        result.action = "busy (another run is loading it)"
        return result
    try:
        # Planned before the lock: another run may have loaded the file since (or it grew). Decide
        # again, under the lock, on its size now.
        try:
            f = dataclasses.replace(f, size=path.stat().st_size)
            (plan,) = plan_files(conn, [f])
        except OSError as exc:  # that file fails; the run goes on with the others
            raise SourceError(f.rel, f"cannot read it: {exc.strerror}") from None
        result.action = plan.action
        if plan.action == "skip":
            return result
        start_byte, line_no = (plan.start_byte, plan.start_line) if plan.action == "append" else (0, 0)
        with database_errors(f"loading {f.rel} failed"):
            if plan.action == "reload":
                forget_file(conn, f.rel, f.kind)
            digest = hashlib.sha256()
            batch: list[tuple[int, bytes]] = []
            consumed = start_byte
            try:
                fh = path.open("rb")
            except OSError as exc:  # that file fails; the run goes on with the others
                raise SourceError(f.rel, f"cannot read it: {exc.strerror}") from None
            with fh:
                left = start_byte
                while left > 0:  # the hash of the loaded prefix continues from here
                    chunk = fh.read(min(1 << 20, left))
                    digest.update(chunk)
                    left -= len(chunk)
                for raw in iter(lambda: fh.readline(_MAX_LINE + 1), b""):  # never more than a line's limit in memory
                    length = len(raw)
                    if not raw.endswith(b"\n"):
                        if length <= _MAX_LINE:  # its writer may still be writing it: the next run loads it
                            result.incomplete_tail = True
                            break
                        skipped = _skip_rest_of_line(fh, digest, raw)  # too long: keep its head (rejected), hash it all
                        if skipped is None:
                            result.incomplete_tail = True
                            break
                        digest, length = skipped[0], length + skipped[1]
                    else:
                        digest.update(raw)
                    line_no += 1
                    consumed += length
                    batch.append((line_no, raw))
                    if len(batch) >= batch_size:
                        _flush(conn, f.rel, f.kind, batch, consumed, line_no, digest, f.size, result)
                        batch = []
                if batch or plan.action != "append":
                    _flush(conn, f.rel, f.kind, batch, consumed, line_no, digest, f.size, result)
            result.bytes_read = consumed - start_byte
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(f.rel),))
    result.seconds = time.perf_counter() - started
    return result


def _skip_rest_of_line(fh: BinaryIO, digest: Any, head: bytes) -> tuple[Any, int] | None:
    """After ``head``, the first ``_MAX_LINE + 1`` bytes of an over-long line: read on to its newline in
    bounded chunks. Returns a new digest with the whole line added (``digest`` is left as it was)
    and how many bytes followed ``head``, or None when the file ends first (the line is incomplete:
    nothing of it counts yet, and the caller's digest still ends before it)."""
    pending = digest.copy()
    pending.update(head)
    more = 0
    while chunk := fh.readline(1 << 20):
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


def lock_key(rel: str) -> int:
    """The advisory-lock key of a file: 64 bits of BLAKE2b (PostgreSQL's 32-bit ``hashtext`` made two
    real file names share a lock, and one of them was skipped as "busy")."""
    return int.from_bytes(hashlib.blake2b(f"jsonl:{rel}".encode(), digest_size=8).digest(), "big", signed=True)


def _flush(conn: psycopg.Connection[Any], rel: str, kind: Kind, batch: list[tuple[int, bytes]], consumed: int, line_no: int,
           digest: Any, size: int, result: FileResult) -> None:
    """One batch: check and type the lines, COPY the rows, insert them and the rejects, refresh
    1-minute bars, move the checkpoint; one transaction."""
    build = ROW_BUILDERS[kind]
    built: list[tuple[Any, ...]] = []
    rejects: list[tuple[int, str, str]] = []
    for n, raw in batch:
        body = raw.rstrip(b"\r\n")
        if not body.strip():
            continue  # blank line: nothing to load, nothing wrong
        try:
            if len(body) > _MAX_LINE:
                raise Reject("line longer than 1 MiB")
            try:
                record = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise Reject("not UTF-8 text" if not _is_utf8(body) else "invalid JSON") from None
            if not isinstance(record, dict):
                raise Reject("not a JSON object")
            built.append((*build(record), n))
        except Reject as why:
            rejects.append((n, str(why), _shown(body, str(why))))
    first = batch[0][0] if batch else line_no
    loaded = 0
    copies: list[tuple[int, str]] = []
    with conn.transaction(), conn.cursor() as cur:
        # The checkpoint commits with the rows, so a commit lost to a crash is simply loaded again:
        # no need to wait for each batch's WAL flush.
        cur.execute("SET LOCAL synchronous_commit = off")
        if built and kind == "scalp":
            # Straight into the table: the checkpoint commits with these rows, so a line is never
            # sent twice (and the unique (source_file, source_line) key would refuse it if it were).
            loaded, copies = _store_ticks(cur, rel, built)
            if copies:
                cur.executemany("INSERT INTO scalp_tick_copies (source_file, source_line, tick_key) VALUES (%s, %s, %s)"
                                " ON CONFLICT (source_file, source_line) DO UPDATE SET tick_key = EXCLUDED.tick_key",
                                [(rel, n, key) for n, key in copies])
        elif built:  # swing rows upsert on (symbol, bar_time); gaps are few
            good = io.StringIO()
            csv.writer(good, lineterminator="\n").writerows(built)
            cur.execute(statement(f"stage_{kind}"))  # type: ignore[arg-type]
            with cur.copy(f"COPY stage_{kind} FROM STDIN (FORMAT csv)") as copy:  # type: ignore[arg-type]
                copy.write(good.getvalue())
            if kind == "swing":
                cur.execute(statement("version_swing"), {"file": rel})  # type: ignore[arg-type]
            cur.execute(statement(f"load_{kind}"), {"file": rel})  # type: ignore[arg-type]
            loaded = cur.rowcount
            cur.execute(f"DROP TABLE stage_{kind}")  # type: ignore[arg-type]
        if rejects:
            cur.executemany(
                "INSERT INTO jsonl_rejects (source_file, source_line, reason, raw) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (source_file, source_line) DO UPDATE SET reason = EXCLUDED.reason, raw = EXCLUDED.raw,"
                " rejected_at = now()",
                [(rel, n, reason, raw) for n, reason, raw in rejects],
            )
        if kind == "scalp" and loaded:
            cur.execute("SELECT pg_advisory_xact_lock_shared(%s)", (BARS_LOCK,))  # merges run side by side
            cur.execute(statement("merge_1m_bars"), {"file": rel, "first": first, "last": line_no})  # type: ignore[arg-type]
        cur.execute(
            "INSERT INTO jsonl_file_checkpoints (source_file, kind, bytes_loaded, lines_loaded, prefix_sha256, file_size)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (source_file) DO UPDATE SET bytes_loaded = EXCLUDED.bytes_loaded,"
            " lines_loaded = EXCLUDED.lines_loaded, prefix_sha256 = EXCLUDED.prefix_sha256, file_size = EXCLUDED.file_size,"
            " updated_at = now()",
            (rel, kind, consumed, line_no, digest.copy().hexdigest(), size),
        )
    result.lines += len(batch)
    result.loaded += loaded
    result.copies += len(copies)
    result.rejected += len(rejects)
    result.rejects.extend((n, reason) for n, reason, _ in rejects[: max(0, 50 - len(result.rejects))])


def tick_key(row: tuple[Any, ...]) -> str:
    """A tick's identity, as 32 hex digits PostgreSQL reads as a uuid: its event time in milliseconds
    (48 bits, so keys arrive in about the order the unique index is kept in: inserting them costs
    next to nothing, where random keys cost a fifth of the load) and 80 bits of BLAKE2b over its
    checked values. Copies of a line, in any file, have one key."""
    millis = int(dt.datetime.fromisoformat(row[1]).timestamp() * 1000)
    return (millis % (1 << 48)).to_bytes(6, "big").hex() + hashlib.blake2b(repr(row).encode(), digest_size=10).hexdigest()


def _store_ticks(cur: psycopg.Cursor[Any], rel: str, built: list[tuple[Any, ...]]) -> tuple[int, list[tuple[int, str]]]:
    """COPY a batch's ticks (row values + line number) into ``scalp_ticks``; returns the rows stored and
    the copies (line, key) of ticks already stored, by this batch or before, which are not.

    Optimistic: the new ticks go in under a savepoint; only when the unique ``tick_key`` refuses them
    (a copy of a stored tick: rare; or another loader storing the same tick at this moment, whose
    commit the refusal waited for) are the stored keys looked up and the batch split again.
    """
    keyed = [(row, tick_key(row[:-1])) for row in built]
    stored: set[str] = set()
    while True:
        fresh: list[tuple[tuple[Any, ...], str]] = []
        copies: list[tuple[int, str]] = []
        seen = set(stored)
        for row, key in keyed:
            if key in seen:
                copies.append((row[-1], key))
            else:
                seen.add(key)
                fresh.append((row, key))
        if not fresh:
            return 0, copies
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows((*row, rel, key) for row, key in fresh)
        try:
            with cur.connection.transaction():  # a savepoint inside the batch's transaction
                with cur.copy(f"COPY scalp_ticks ({SCALP_COLUMNS}) FROM STDIN (FORMAT csv)") as copy:  # type: ignore[arg-type]
                    copy.write(text.getvalue())
                return cur.rowcount, copies
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "scalp_ticks_tick_key":
                raise
        cur.execute("SELECT tick_key FROM scalp_ticks WHERE tick_key = ANY(%s::uuid[])", ([k for _, k in fresh],))
        stored |= {r[0].hex for r in cur.fetchall()}


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
        "DELETE FROM scalp_1m_bars b USING (SELECT DISTINCT symbol, bar_time FROM minutes_to_refresh) m"
        " WHERE b.symbol = m.symbol AND b.bar_time = m.bar_time"
    )
    cur.execute(statement("refresh_1m_bars"))  # type: ignore[arg-type]


def forget_file(conn: psycopg.Connection[Any], rel: str, kind: Kind) -> None:
    """Remove everything an earlier version of a file loaded (rows, rejects, checkpoint), in one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        if kind == "scalp":
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (BARS_LOCK,))
            cur.execute(
                "CREATE TEMP TABLE minutes_to_refresh ON COMMIT DROP AS SELECT DISTINCT symbol, date_trunc('minute', event_time)"
                " AS bar_time FROM scalp_ticks WHERE source_file = %s",
                (rel,),
            )
        table = _ROW_TABLES[kind]
        if kind == "scalp":  # the ticks another file also carries stay, under that file's line
            cur.execute(statement("forget_scalp_copies"), {"file": rel})  # type: ignore[arg-type]
            cur.execute("DELETE FROM scalp_tick_copies WHERE source_file = %s", (rel,))
        cur.execute(f"DELETE FROM {table} WHERE source_file = %s", (rel,))  # type: ignore[arg-type]  # noqa: S608 (fixed names)
        if kind == "swing":  # the bars this file won: back to the best version another file provides
            cur.execute(statement("forget_swing"), {"file": rel})  # type: ignore[arg-type]
        cur.execute("DELETE FROM jsonl_rejects WHERE source_file = %s", (rel,))
        cur.execute("DELETE FROM jsonl_file_checkpoints WHERE source_file = %s", (rel,))
        if kind == "scalp":
            _refresh_bars(cur)
