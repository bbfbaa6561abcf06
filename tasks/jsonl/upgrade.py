"""The move of ticks and 1-minute bars stored before day partitions into them (migration 017).

The migration only renamed the old tables; this moves their rows into the day partitions in
batches of pages, each batch one transaction that deletes the rows it copies from the old table
and records how far it got (``partition_moves``), so a kill loses at most the batch in flight and
the next command goes on from there. What is left to move is what the old table still holds, not
a page number: a rewrite of the old table meanwhile (``VACUUM FULL``, ``CLUSTER``) packs its rows
into pages already passed, and the move goes over the table again from its start, saying so; no
row is skipped or moved twice. The schema lock
is not held: commands that do not read ticks or bars never wait. Commands that do (JSONL
ingestion, retention) call ``finish_moves`` first and show how far it is; a second one waits for
the first, saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tasks.jsonl.partitions import DAY_TABLES, ensure_days

MOVE_LOCK = 0x4A534D56
BATCH_PAGES = 1_000  # ~8 MB of the old table per transaction: tens of thousands of ticks
_SAY_EVERY_S = 10.0


@dataclass(frozen=True)
class Move:
    table: str
    source: str
    next_page: int
    pages: int
    rows_moved: int
    rows_guess: int

    def describe(self) -> str:
        share = min(self.next_page / self.pages, 1.0) if self.pages else 1.0
        # A table never analyzed has no row estimate (PostgreSQL's -1, stored as 0): then only what is done is said.
        of = f" of about {max(self.rows_guess, self.rows_moved):,}" if self.rows_guess > 0 else ""
        return f"moving {self.table} into day partitions (upgrade 017): {share:.0%} done, {self.rows_moved:,}{of} rows"


def pending_moves(conn: psycopg.Connection[Any]) -> list[Move]:
    """The moves not finished yet (none on a database made after migration 017)."""
    if conn.execute("SELECT to_regclass('partition_moves')").fetchone() == (None,):
        return []
    rows = conn.execute("SELECT table_name, source, next_page, pages, rows_moved, rows_guess FROM partition_moves"
                        " WHERE finished_at IS NULL ORDER BY table_name").fetchall()
    return [Move(*row) for row in rows]


def finish_moves(conn: psycopg.Connection[Any], say: Callable[[str], None], *, batch_pages: int = BATCH_PAGES) -> int:
    """Finish every pending move (``conn`` in autocommit mode); returns the rows this call moved.
    Another process moving already: wait for it (said once), then finish what it left."""
    moves = pending_moves(conn)
    if not moves:
        return 0
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (MOVE_LOCK,)).fetchone() == (True,):
        say("Waiting for another process that is " + "; ".join(m.describe() for m in moves))
        conn.execute("SELECT pg_advisory_lock(%s)", (MOVE_LOCK,))
    try:
        moved = 0
        for move in pending_moves(conn):
            moved += _move(conn, move, say, batch_pages)
        return moved
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MOVE_LOCK,))


def _move(conn: psycopg.Connection[Any], move: Move, say: Callable[[str], None], batch_pages: int) -> int:
    column = DAY_TABLES[move.table]
    def attributes(table: str) -> list[str]:
        return [r[0] for r in conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
                                           " AND NOT attisdropped ORDER BY attnum", (table,))]

    # The old table's columns; a column added to the new table since (run_id, migration 032) is NULL
    # for the rows moved, not the moving connection's run (it did not write them).
    old = set(attributes(move.source))
    names = [name for name in attributes(move.table) if name in old]
    added = [name for name in attributes(move.table) if name not in old and name == "run_id"]
    columns = sql.SQL(", ").join(map(sql.Identifier, names))
    into = sql.SQL(", ").join(map(sql.Identifier, names + added))
    values = sql.SQL(", ").join([*map(sql.Identifier, names), *(sql.SQL("NULL") for _ in added)])
    source, target = sql.Identifier(move.source), sql.Identifier(move.table)
    within = sql.SQL("ctid >= %(lo)s::tid AND ctid < %(hi)s::tid")  # a range of whole pages: a TID range scan
    days_query = sql.SQL("SELECT DISTINCT ({} AT TIME ZONE 'UTC')::date FROM {} WHERE {}").format(sql.Identifier(column), source, within)
    copy = sql.SQL("WITH moved AS (DELETE FROM {} WHERE {} RETURNING {}) INSERT INTO {} ({}) SELECT {} FROM moved").format(
        source, within, columns, target, into, values)
    left = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(source)
    said = move.describe()
    say(said[:1].upper() + said[1:])
    page, pages, rows, said_at, moved = move.next_page, move.pages, move.rows_moved, time.monotonic(), 0
    while True:
        while page < pages:
            bounds = {"lo": f"({page},0)", "hi": f"({page + batch_pages},0)"}
            ensure_days(conn, [r[0] for r in conn.execute(days_query, bounds)], tables=(move.table,))
            with conn.transaction():
                done = conn.execute(copy, bounds).rowcount
                conn.execute("UPDATE partition_moves SET next_page = %s, rows_moved = rows_moved + %s WHERE table_name = %s",
                             (page + batch_pages, done, move.table))
            page, rows, moved = page + batch_pages, rows + done, moved + done
            if time.monotonic() - said_at >= _SAY_EVERY_S and page < pages:
                say("  " + Move(move.table, move.source, page, pages, rows, move.rows_guess).describe())
                said_at = time.monotonic()
        if conn.execute(left).fetchone() == (False,):
            break
        # Rows in pages already passed: the old table was rewritten (VACUUM FULL, CLUSTER) since the move began.
        size = conn.execute("SELECT pg_relation_size(%s) / current_setting('block_size')::bigint", (move.source,)).fetchone()
        page, pages = 0, int(size[0]) if size else 0
        conn.execute("UPDATE partition_moves SET next_page = 0, pages = %s WHERE table_name = %s", (pages, move.table))
        say(f"  {move.source} was rewritten while the move was interrupted (VACUUM FULL or CLUSTER): going over it again from its"
            f" start ({pages:,} pages); {rows:,} rows are moved so far")
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE {}").format(source))
        conn.execute("UPDATE partition_moves SET finished_at = now() WHERE table_name = %s", (move.table,))
    say(f"Moved {rows:,} rows of {move.table} into day partitions")
    return moved
