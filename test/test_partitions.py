"""Ticks and 1-minute bars in UTC day partitions: made before their data, read by day, and an
upgrade that moves a database's existing ticks into them outside the schema lock, in batches,
resumable after a kill at any moment, while commands that do not read ticks go on."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tasks.core.db import connect
from tasks.jsonl.partitions import ensure_days
from test.fix_db import fresh_database, migrate_before, query_rows
from test.fix_yahoo import ROOT, CliRunner
from test.jsonl_tree import tick, write

ING = "flows.jsonl_ingest"
VALUE = ("flows.event_valuation", "--fundamentals", "none", "--delay", "0")
DAYS = (dt.date(2026, 1, 22), dt.date(2026, 1, 25))  # not adjacent: the second day's partitions are made later
TABLES = {  # every column, provenance and ids included: a move must change nothing (but run_id: the old rows have none;
    # and a bar's loaded_at, which the old table lacks: a moved bar is written when it is moved)
    "ticks": "SELECT (to_jsonb(t) - 'run_id')::text FROM observer_ticks t",
    "bars": "SELECT (to_jsonb(b) - 'run_id' - 'loaded_at')::text FROM observer_bars_1m b",
    "copies": "SELECT * FROM scalp_tick_copies",
    "checkpoints": "SELECT source_file, bytes_loaded, lines_loaded, prefix_sha256 FROM jsonl_file_checkpoints",
}
# Under the names before migration 036 (the new database reads them through its views of the old names).
COPIED = ("jsonl_origins", "jsonl_file_checkpoints", "scalp_ticks", "scalp_1m_bars", "scalp_tick_copies", "scalp_gaps",
          "swing_bars_10m", "swing_bar_versions", "jsonl_rejects")


def observer_files(root: Path) -> None:
    """Two days of 2 Hz ticks of two symbols, 10 minutes a day, and one tick carried by two files (a copy)."""
    for day in DAYS:
        start = dt.datetime.combine(day, dt.time(1, 0), dt.UTC)
        recs = [tick(s, start + dt.timedelta(milliseconds=500 * half + 120), half) for half in range(1200) for s in ("005930", "000660")]
        write(root / f"scalp/{start:%Y%m%d_%H%M}.jsonl", recs)
    write(root / "scalp/20260125_0200.jsonl", [recs[-1]])


def partitions(conn: psycopg.Connection[Any], table: str) -> set[str]:
    return {r[0] for r in conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                       " WHERE i.inhparent = to_regclass(%s)", (table,))}


def wait_for(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = (), timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not conn.execute(query, params).fetchone()[0]:  # type: ignore[arg-type,index]
        assert time.monotonic() < deadline, f"timed out waiting for: {query}"
        time.sleep(0.05)


def start_mover(dsn: str) -> tuple[subprocess.Popen[str], int]:
    """A process that finishes the pending moves 5 pages at a time; returns it and its backend's pid."""
    code = ("import sys; from tasks.core.db import connect; from tasks.jsonl.upgrade import finish_moves;"
            " conn = connect(sys.argv[1], autocommit=True); print(conn.info.backend_pid, flush=True);"
            " finish_moves(conn, print, batch_pages=5)")
    proc = subprocess.Popen([sys.executable, "-c", code, dsn], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def test_ticks_and_bars_are_stored_in_the_partitions_of_their_utc_days_and_a_range_query_reads_only_its_day(
        run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    observer_files(tmp_path)
    done = run_cli(ING, "--root", str(tmp_path))
    assert done.code == 0, done.stdout + done.stderr
    with connect(dsn, autocommit=True) as conn:
        for table in ("observer_ticks", "observer_bars_1m"):  # each day's, and the next day's made ahead
            assert partitions(conn, table) == {f"{table}_p{d + dt.timedelta(days=k):%Y%m%d}" for d in DAYS for k in (0, 1)}
        per_day = conn.execute("SELECT tableoid::regclass::text, min(event_at), max(event_at), count(*) FROM observer_ticks"
                               " GROUP BY 1 ORDER BY 1").fetchall()
        assert [(name, first.date(), last.date(), n) for name, first, last, n in per_day] == [
            (f"observer_ticks_p{d:%Y%m%d}", d, d, 2400) for d in DAYS]
        start = dt.datetime.combine(DAYS[1], dt.time(1, 0), dt.UTC)
        plan = conn.execute("EXPLAIN (FORMAT JSON) SELECT * FROM observer_ticks WHERE ticker = '005930' AND event_at >= %s"
                            " AND event_at < %s", (start, start + dt.timedelta(hours=1))).fetchone()[0]  # type: ignore[index]
        assert set(relations(plan)) == {f"observer_ticks_p{DAYS[1]:%Y%m%d}"}
        assert conn.execute("SELECT count(*) FROM scalp_tick_copies").fetchone() == (1,)  # the tick the third file carries too


def relations(plan: Any) -> list[str]:
    """Every relation a JSON query plan reads."""
    if isinstance(plan, list):
        return [name for item in plan for name in relations(item)]
    if isinstance(plan, dict):
        own = [plan["Relation Name"]] if "Relation Name" in plan else []
        return own + [name for value in plan.values() for name in relations(value)]
    return []


def loaded_before_partitions(run_cli: CliRunner, dsn: str, pg_server_dsn: str, tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """``dsn`` made a database loaded before day partitions (schema before 017) holding what a load
    of ``observer_files`` into a new database gives; returns that (``TABLES``)."""
    observer_files(tmp_path)
    with fresh_database(pg_server_dsn) as clean:  # what a load into a new database gives
        assert run_cli(ING, "--root", str(tmp_path), env={"DATABASE_URL": clean}).code == 0
        expected = query_rows(clean, TABLES)
        with connect(dsn, autocommit=True) as old, connect(clean) as source, old.transaction():  # connect: the machinery on its path
            migrate_before(old, "017")  # a database loaded before day partitions, holding the same
            for table in COPIED:
                order = " ORDER BY event_time" if table == "scalp_ticks" else ""  # stored in time order: the first day's pages first
                columns = ", ".join(r[0] for r in old.execute(  # the old schema's (later ones added some)
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                    (table,)))
                with source.cursor().copy(f"COPY (SELECT {columns} FROM {table}{order}) TO STDOUT") as out, \
                        old.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as into:  # noqa: S608 (test constants)
                    for chunk in out:
                        into.write(chunk)
            old.execute("SELECT setval('scalp_ticks_id_seq', (SELECT max(id) FROM scalp_ticks))")
    assert len(expected["ticks"]) == 4800 and len(expected["copies"]) == 1
    return expected


@pytest.mark.empty_database
def test_an_upgrade_moves_stored_ticks_into_day_partitions_outside_the_schema_lock_and_a_kill_at_any_moment_loses_nothing(
        run_cli: CliRunner, dsn: str, pg_server_dsn: str, tmp_path: Path) -> None:
    expected = loaded_before_partitions(run_cli, dsn, pg_server_dsn, tmp_path)

    first = run_cli(*VALUE)  # the first command after the upgrade migrates: a rename, nothing moved
    assert first.code == 0 and "Nothing to value" in first.stdout, first.stdout + first.stderr
    with connect(dsn, autocommit=True) as conn:
        moves = dict(conn.execute("SELECT table_name, next_page FROM partition_moves WHERE finished_at IS NULL"))
        assert moves == {"observer_ticks": 0, "observer_bars_1m": 0}
        assert conn.execute("SELECT count(*) FROM scalp_ticks_unpartitioned").fetchone() == (4800,)
        pages = conn.execute("SELECT pages FROM partition_moves WHERE table_name = 'observer_ticks'").fetchone()[0]  # type: ignore[index]
        assert pages > 40  # enough for several batches of 5 pages a day

    # Kill 1, between batches: the second day's partition is not there and the test holds the lock
    # that making one takes, so the mover stops at the first batch holding that day's ticks.
    with connect(dsn, autocommit=True) as gate:
        ensure_days(gate, DAYS, tables=("observer_bars_1m",))
        ensure_days(gate, DAYS[:1], tables=("observer_ticks",))
        gate.execute("SELECT pg_advisory_lock(x'4A53504B'::int)")
        mover, backend = start_mover(dsn)
        wait_for(gate, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted)", (backend,))
        moved, next_page = gate.execute("SELECT rows_moved, next_page FROM partition_moves WHERE table_name = 'observer_ticks'").fetchone()  # type: ignore[misc]
        assert 0 < next_page < pages and 0 < moved <= 2400  # the first day's ticks, or part of them
        assert gate.execute("SELECT count(*) FROM observer_ticks").fetchone() == (moved,)  # each batch committed with its count
        # Meanwhile commands that do not read ticks go on, and one that does says how far the upgrade is.
        assert run_cli(*VALUE).code == 0 and run_cli("flows.backfill_status").code == 0
        plan = run_cli(ING, "--root", str(tmp_path), "--dry-run")
        said = "First, an upgrade is moving observer_ticks into day partitions (upgrade 017): "
        assert plan.code == 0 and said in plan.stdout, plan.stdout
        mover.send_signal(signal.SIGKILL)
        mover.wait(timeout=10)

        # Kill 2, inside a batch: its rows are inserted, and the update of its progress waits on a
        # row lock the test holds.
        with connect(dsn) as hold:
            hold.execute("SELECT 1 FROM partition_moves WHERE table_name = 'observer_ticks' FOR UPDATE")
            gate.execute("SELECT pg_advisory_unlock(x'4A53504B'::int)")
            mover, backend = start_mover(dsn)
            wait_for(gate, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'transactionid' AND NOT granted)",
                     (backend,))
            mover.send_signal(signal.SIGKILL)
            mover.wait(timeout=10)
            hold.rollback()
        wait_for(gate, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (backend,))  # its server side ended too
        moved_now = gate.execute("SELECT rows_moved FROM partition_moves WHERE table_name = 'observer_ticks'").fetchone()[0]  # type: ignore[index]
        assert gate.execute("SELECT count(*) FROM observer_ticks").fetchone() == (moved_now,)  # the killed batch left nothing

    again = run_cli(ING, "--root", str(tmp_path))  # the next command that reads ticks finishes the move, then loads
    assert again.code == 0, again.stdout + again.stderr
    begun = re.search(r"Moving observer_ticks into day partitions \(upgrade 017\): (\d+)% done", again.stdout)
    assert begun and int(begun[1]) > 0, again.stdout  # it went on from where the kills left it
    assert "Moved 4,800 rows of observer_ticks into day partitions" in again.stdout
    assert "3 unchanged" in again.stdout and "0 rows loaded" in again.stdout, again.stdout
    assert query_rows(dsn, TABLES) == expected
    with connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('scalp_ticks_unpartitioned'), to_regclass('scalp_1m_bars_unpartitioned')").fetchone() == (
            None, None)
        assert conn.execute("SELECT count(*) FROM partition_moves WHERE finished_at IS NULL").fetchone() == (0,)
        assert {f"observer_ticks_p{d:%Y%m%d}" for d in DAYS} <= partitions(conn, "observer_ticks")
    more = tmp_path / "scalp/20260125_0200.jsonl"  # and it loads on into the partitions
    more.write_text(more.read_text() + json.dumps(tick("005930", dt.datetime(2026, 1, 26, 3, tzinfo=dt.UTC), 1)) + "\n")
    last = run_cli(ING, "--root", str(tmp_path))
    assert last.code == 0 and "1 rows loaded" in last.stdout, last.stdout


@pytest.mark.empty_database
def test_a_move_interrupted_then_the_old_table_rewritten_by_vacuum_full_moves_every_row_once(
        run_cli: CliRunner, dsn: str, pg_server_dsn: str, tmp_path: Path) -> None:
    expected = loaded_before_partitions(run_cli, dsn, pg_server_dsn, tmp_path)
    assert run_cli(*VALUE).code == 0  # the upgrade's rename
    with connect(dsn, autocommit=True) as gate:  # killed part-way, as in the test above
        ensure_days(gate, DAYS, tables=("observer_bars_1m",))
        ensure_days(gate, DAYS[:1], tables=("observer_ticks",))
        gate.execute("SELECT pg_advisory_lock(x'4A53504B'::int)")
        mover, backend = start_mover(dsn)
        wait_for(gate, "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted)", (backend,))
        mover.send_signal(signal.SIGKILL)
        mover.wait(timeout=10)
        gate.execute("SELECT pg_advisory_unlock(x'4A53504B'::int)")
        wait_for(gate, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (backend,))
        moved, next_page = gate.execute("SELECT rows_moved, next_page FROM partition_moves WHERE table_name = 'observer_ticks'").fetchone()  # type: ignore[misc]
        assert 0 < moved < 4800 and next_page > 0
        gate.execute("VACUUM FULL scalp_ticks_unpartitioned")  # the rows left are packed into the pages already passed
        left = gate.execute("SELECT count(*), pg_relation_size('scalp_ticks_unpartitioned') / 8192"
                            " FROM scalp_ticks_unpartitioned").fetchone()
        assert left is not None and left[0] == 4800 - moved and left[1] <= next_page  # all before where the move stood
    again = run_cli(ING, "--root", str(tmp_path))
    assert again.code == 0, again.stdout + again.stderr
    assert "scalp_ticks_unpartitioned was rewritten while the move was interrupted (VACUUM FULL or CLUSTER): going over it" in again.stdout
    assert "Moved 4,800 rows of observer_ticks into day partitions" in again.stdout, again.stdout
    assert query_rows(dsn, TABLES) == expected
