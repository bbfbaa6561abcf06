"""Run and per-ticker progress records in the database (``backfill_runs``, ``backfill_run_items``).

Item records are written inside the caller's transaction, next to the ticker's rows, so the
record and the data commit or vanish together. Every command that writes data records a run, and
what it writes carries the run's id (the data tables' ``run_id``, migration 032): its connections
hold the id in the setting ``market_backfill.run_id``, which the column's default reads; another
process of the run gets it in its connection string (``run_dsn``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tasks.core.db import database_errors, first_line, open_database

RUN_STATUSES = ("running", "done", "failed", "rate_limited", "interrupted", "crashed")
# The session that runs a backfill (migration 014): gone from pg_stat_activity = the run's process died.
CRASHED_SUMMARY = "crashed: the process running it ended without finishing (killed, or its machine went down)"
RUN_SETTING = "market_backfill.run_id"  # what the data tables' run_id default reads


@dataclass(frozen=True)
class RunRecord:
    run_id: int
    flow: str
    command: str
    params: dict[str, Any]
    status: str


def start_run(conn: psycopg.Connection[Any], flow: str, command: str, params: dict[str, Any], tickers: list[str]) -> int:
    """Create a run with every ticker ``pending``; return its id.

    Raises:
        StoreError: the insert failed.
    """
    with database_errors("recording the run failed"):
        mark_crashed_runs(conn)
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO backfill_runs (flow, command, params, backend_pid, backend_start) VALUES (%s, %s, %s, pg_backend_pid(),"
                " (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())) RETURNING run_id",
                (flow, command, json.dumps(params)),
            ).fetchone()
            assert row is not None
            run_id = int(row[0])
            stamp(conn, run_id)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO backfill_run_items (run_id, position, ticker) VALUES (%s, %s, %s)",
                    [(run_id, i, t) for i, t in enumerate(tickers)],
                )
    return run_id


def record_item(
    conn: psycopg.Connection[Any], run_id: int, ticker: str, status: str, detail: str | None = None, *, new: int = 0, updated: int = 0
) -> None:
    """Set one ticker's outcome (call inside the transaction that wrote its rows)."""
    conn.execute(
        "UPDATE backfill_run_items SET status = %s, detail = %s, rows_new = %s, rows_updated = %s, updated_at = now()"
        " WHERE run_id = %s AND ticker = %s",
        (status, detail, new, updated, run_id, ticker),
    )


def finish_run(conn: psycopg.Connection[Any], run_id: int, status: str, summary: str) -> None:
    """Close the run with its final status and summary line (best effort on a broken connection)."""
    if status not in RUN_STATUSES:
        raise ValueError(status)
    try:
        with conn.transaction():
            conn.execute(
                "UPDATE backfill_runs SET status = %s, summary = %s, finished_at = now() WHERE run_id = %s",
                (status, summary, run_id),
            )
    except psycopg.Error:
        pass  # the run stays 'running'; --resume treats that as interrupted


def reopen_run(conn: psycopg.Connection[Any], run_id: int) -> None:
    """Mark an interrupted run as running again (``--resume`` continues the same record), owned by this session."""
    with conn.transaction():
        conn.execute("UPDATE backfill_runs SET status = 'running', finished_at = NULL, backend_pid = pg_backend_pid(),"
                     " backend_start = (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()) WHERE run_id = %s",
                     (run_id,))
    stamp(conn, run_id)


def stamp(conn: psycopg.Connection[Any], run_id: int) -> None:
    """What ``conn`` writes from now on carries ``run_id`` (a session setting; made inside a
    transaction, it lasts only if that commits, as start_run's does)."""
    conn.execute("SELECT set_config(%s, %s, false)", (RUN_SETTING, str(run_id)))


def run_dsn(dsn: str, run_id: int) -> str:
    """``dsn`` whose connections write rows carrying ``run_id``, for the run's other connections
    and processes (never said or recorded: it is the user's DSN, password included)."""
    params = conninfo_to_dict(dsn)
    params["options"] = f"{params.get('options') or ''} -c {RUN_SETTING}={run_id}".strip()
    return make_conninfo(**params)  # type: ignore[arg-type]


@dataclass
class RecordedRun:
    """A command's run while it writes: its id (None in a dry run, which records nothing) and the
    connection string its writers use. ``ended`` records how it ended (else: done, or failed on an
    exception, interrupted on Ctrl+C)."""

    run_id: int | None
    dsn: str
    status: str = "done"
    summary: str = ""

    def ended(self, code: int, summary: str = "") -> None:
        self.status = {0: "done", 75: "rate_limited", 130: "interrupted"}.get(int(code), "failed")
        self.summary = summary


@contextlib.contextmanager
def recorded_run(dsn: str, flow: str, command: str, params: dict[str, Any], *, dry_run: bool = False) -> Iterator[RecordedRun]:
    """Record a run of ``flow`` for the block (a command without per-ticker items). Its own
    connection stays open to the end, so a run whose process is killed is found crashed by the
    next one (``mark_crashed_runs``).

    Raises:
        StoreError: the database is unreachable or the record could not be written.
    """
    if dry_run:
        yield RecordedRun(None, dsn)
        return
    conn = open_database(dsn)
    try:
        run_id = start_run(conn, flow, command, params, [])
        run = RecordedRun(run_id, run_dsn(dsn, run_id))
        try:
            yield run
        except KeyboardInterrupt:
            run.status, run.summary = "interrupted", "interrupted"
            raise
        except BaseException as exc:
            run.status, run.summary = "failed", first_line(exc)
            raise
        finally:
            finish_run(conn, run_id, run.status, run.summary or run.status)
    finally:
        conn.close()


def mark_crashed_runs(conn: psycopg.Connection[Any]) -> int:
    """Mark 'running' runs whose database session is gone as 'crashed'; how many.

    A run holds its session from start to end, so a session that no longer exists means its
    process died without finishing. Rows from before migration 014 (no session) are left alone.
    """
    with conn.transaction():
        cur = conn.execute(
            "UPDATE backfill_runs r SET status = 'crashed', finished_at = now(), summary = %s"
            " WHERE r.status = 'running' AND r.backend_pid IS NOT NULL AND NOT EXISTS ("
            "   SELECT 1 FROM pg_stat_activity a WHERE a.pid = r.backend_pid"
            "   AND (r.backend_start IS NULL OR a.backend_start IS NULL OR a.backend_start = r.backend_start))",
            (CRASHED_SUMMARY,),
        )
    return cur.rowcount


def last_unfinished_run(conn: psycopg.Connection[Any], flow: str) -> RunRecord | None:
    """The newest run of ``flow`` that did not finish (interrupted, rate limited, crashed)."""
    mark_crashed_runs(conn)
    row = conn.execute(
        "SELECT run_id, flow, command, params, status FROM backfill_runs"
        " WHERE flow = %s ORDER BY run_id DESC LIMIT 1",
        (flow,),
    ).fetchone()
    if row is None or row[4] in ("done", "failed"):
        return None
    return RunRecord(int(row[0]), row[1], row[2], dict(row[3]), row[4])


def item_statuses(conn: psycopg.Connection[Any], run_id: int) -> dict[str, str]:
    """Ticker → status for a run, in run order."""
    rows = conn.execute(
        "SELECT ticker, status FROM backfill_run_items WHERE run_id = %s ORDER BY position", (run_id,)
    ).fetchall()
    return {t: s for t, s in rows}
