"""Files of the same name under two roots are two files; which swing version wins is decided by the
time in the file's name; a database loaded before migration 010 ends where a fresh load ends."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from test.fix_db import fresh_database, query_rows
from test.fix_yahoo import CliRunner
from test.jsonl_tree import START, iso, make_tree, swing, write

ING = "flows.jsonl_ingest"


def content(dsn: str) -> dict[str, set[tuple[Any, ...]]]:
    """What the tables hold, without provenance (keys differ with the order roots are loaded in)."""
    return {name: set(rows) for name, rows in query_rows(dsn, {
        "ticks": "SELECT ticker, event_at, last_price, volume FROM observer_ticks",
        "bars": "SELECT ticker, bar_start_at, open, high, low, close, volume, tick_count FROM observer_bars_1m",
        "swing": "SELECT ticker, polled_at, close FROM observer_bars_10m",
        "gaps": "SELECT gap_start_at, gap_seconds, scope, source_line FROM observer_gaps",
    }).items()}


def test_two_roots_holding_files_of_the_same_names_keep_each_others_rows(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                                         tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a", symbols=("005930",), files=2, minutes_per_file=1)
    b = make_tree(tmp_path / "b", symbols=("035420",), files=2, minutes_per_file=1)
    assert set(a.ticks) == set(b.ticks) and set(a.swings) == set(b.swings)  # the same relative names
    first = run_cli(ING, "--root", str(a.root))
    second = run_cli(ING, "--root", str(b.root))
    assert first.code == 0 and second.code == 0, second.stdout + second.stderr
    assert "Reloaded" not in second.stdout and "5 new" in second.stdout
    assert f": {b.root.resolve()}/scalp on " in second.stdout  # a new origin, said
    got = content(dsn)
    expected_ticks = {(t["symbol"], t["event_time"]) for t in a.all_ticks() + b.all_ticks()}
    assert {(r[0], iso(r[1].astimezone(dt.UTC))) for r in got["ticks"]} == expected_ticks
    assert {(r[0], iso(r[1].astimezone(dt.UTC))) for r in got["swing"]} == {
        (s["symbol"], s["ts"]) for recs in [*a.swings.values(), *b.swings.values()] for s in recs}
    assert len(got["gaps"]) == len(a.gaps[next(iter(a.gaps))])  # the same ledger lines in both roots: each kept, per file
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM observer_gaps").fetchone() == (2 * len(a.gaps[next(iter(a.gaps))]),)

    again = run_cli(ING, "--root", str(a.root))  # root A again, and its folders named one by one: the same files
    assert again.code == 0 and "0 new, 0 grown, 0 reloaded, 5 unchanged" in again.stdout, again.stdout
    kinds = run_cli(ING, "--swing", str(a.root / "swing"), "--scalp", str(a.root / "scalp"), "--gaps", str(a.root / "system"))
    assert kinds.code == 0 and "5 unchanged" in kinds.stdout, kinds.stdout
    elsewhere = run_cli(ING, "--root", str(a.root), "--dry-run", env={"BACKFILL_HOST": "another-machine"})  # another host's folder
    assert elsewhere.code == 0 and "from 5 of 5 files" in elsewhere.stdout, elsewhere.stdout
    assert content(dsn) == got
    with fresh_database(pg_server_dsn) as clean:  # the other order, on a database that never saw either
        assert run_cli(ING, "--root", str(b.root), env={"DATABASE_URL": clean}).code == 0
        assert run_cli(ING, "--root", str(a.root), env={"DATABASE_URL": clean}).code == 0
        assert content(clean) == got


def _bar(close: int) -> dict:
    return swing("005930", START, 1) | {"price": {"open": close, "high": close, "low": close, "close": close}}


def _stored_close(dsn: str) -> list[Decimal]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT close FROM observer_bars_10m ORDER BY polled_at")]


def test_the_swing_bar_of_the_latest_file_by_its_name_wins_wherever_the_file_sits(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                                                 tmp_path: Path) -> None:
    root = tmp_path / "data"
    older = root / "swing" / "z" / "20260120_0900.jsonl"  # a folder that sorts after the newer file's
    newer = root / "swing" / "20260123" / "20260123_0900.jsonl"
    write(older, [_bar(400)])
    write(newer, [_bar(200)])
    assert run_cli(ING, "--root", str(root)).code == 0
    assert _stored_close(dsn) == [Decimal(200)]  # January 23 beats January 20

    write(newer, [swing("005930", START + dt.timedelta(minutes=10), 2)])  # the newer file no longer has the bar
    assert run_cli(ING, "--root", str(root)).code == 0
    assert _stored_close(dsn)[0] == Decimal(400)  # the older file's version comes back
    write(newer, [_bar(200)])
    assert run_cli(ING, "--root", str(root)).code == 0
    with psycopg.connect(dsn) as conn:  # the bar the rewritten content alone had is kept, under its own provenance
        stored = conn.execute("SELECT close, source_file FROM observer_bars_10m ORDER BY polled_at").fetchall()
    assert [r[0] for r in stored] == [Decimal(200), Decimal(swing("005930", START + dt.timedelta(minutes=10), 2)["price"]["close"])]
    assert stored[1][1].startswith("swing/20260123/20260123_0900.jsonl@")

    with fresh_database(pg_server_dsn) as clean:  # the newer file loaded first, the older one appearing later
        newer.rename(tmp_path / "aside.jsonl")
        older.rename(tmp_path / "older.jsonl")
        newer.parent.mkdir(exist_ok=True)
        (tmp_path / "aside.jsonl").rename(newer)
        assert run_cli(ING, "--root", str(root), env={"DATABASE_URL": clean}).code == 0
        (tmp_path / "older.jsonl").rename(older)
        assert run_cli(ING, "--root", str(root), env={"DATABASE_URL": clean}).code == 0
        assert _stored_close(clean) == [Decimal(200)]


def _as_before_migration_010(dsn: str) -> None:
    """Turn a database loaded by this checkout into what a checkout before migration 010 left after
    the upgrade to 010..014: versions only of the winning bars, checkpoints without origins."""
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute("DELETE FROM backfill_internal.swing_bar_versions v WHERE NOT EXISTS (SELECT 1 FROM observer_bars_10m b"
                     " WHERE b.source_file = v.source_file AND b.source_line = v.source_line)")
        conn.execute("UPDATE backfill_internal.jsonl_file_checkpoints SET origin_id = NULL, file_time = NULL, must_reload = NULL,"
                     " rel = NULL")
        conn.execute("DELETE FROM backfill_internal.jsonl_origins")
        # where a database before 015 keeps it: in the data's schema, moved by 030 (so run again too)
        conn.execute("ALTER TABLE backfill_internal.jsonl_origins SET SCHEMA public")
        conn.execute("DELETE FROM backfill_internal.market_backfill_migrations WHERE version LIKE '015%' OR version LIKE '030%'")


def test_an_upgrade_from_before_migration_010_ends_where_a_fresh_load_ends(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                                           tmp_path: Path) -> None:
    root = tmp_path / "data"
    bars = [swing(symbol, START + dt.timedelta(minutes=10 * k), k) for symbol in ("005930", "000660", "035420") for k in range(50)]
    write(root / "swing" / "20260122_0000.jsonl", bars)
    copy = root / "swing" / "20260122_0010.jsonl"
    write(copy, [b | {"volume": b["volume"] + 1} for b in bars])  # the same bars again, later: this file wins them all
    assert run_cli(ING, "--root", str(root)).code == 0
    _as_before_migration_010(dsn)

    write(copy, [b | {"volume": b["volume"] + 1} for b in bars[:3]])  # the copy cut to 3 lines
    result = run_cli(ING, "--root", str(root))
    assert result.code == 0, result.stdout + result.stderr
    assert "Reloaded (its bar versions were not recorded before the upgrade (migration 010)): swing/20260122_0000.jsonl" in result.stdout
    with psycopg.connect(dsn) as conn:
        got = sorted(conn.execute("SELECT ticker, polled_at, volume, source_file, source_line FROM observer_bars_10m"))
    expected = {(b["symbol"], b["ts"]): b["volume"] for b in bars} | {(b["symbol"], b["ts"]): b["volume"] + 1 for b in bars[:3]}
    assert {(r[0], iso(r[1].astimezone(dt.UTC))): r[2] for r in got} == expected and len(got) == 150
    with fresh_database(pg_server_dsn) as clean:
        assert run_cli(ING, "--root", str(root), env={"DATABASE_URL": clean}).code == 0
        with psycopg.connect(clean) as conn:
            assert sorted(conn.execute("SELECT ticker, polled_at, volume, source_file, source_line FROM observer_bars_10m")) == got
    again = run_cli(ING, "--root", str(root))
    assert again.code == 0 and "2 unchanged" in again.stdout  # reloaded once, not on every run


def test_a_path_the_other_run_of_its_origin_claimed_a_moment_earlier_keeps_its_plain_key(
        db: psycopg.Connection[Any], tmp_path: Path) -> None:
    """Two runs over one root: the other run claims a new file's path after this run looked for its
    own keys and before it read which paths are taken. The path is this origin's, not another's: both
    runs key the file by its path (a second key loaded the file twice; seen 1 in 30 two-run loads)."""
    from tasks.jsonl.files import JsonlFile
    from tasks.jsonl.origins import _claim, _origins

    base = tmp_path / "scalp"
    f = JsonlFile(rel="scalp/20260122_0030.jsonl", kind="scalp", size=0, path=base / "20260122_0030.jsonl", base=base, key="")
    origin = _origins(db, "host-a", [str(base)], claim=True, say=lambda _: None)[str(base)]
    other = _claim(db, f, origin, {}, claim=True)
    taken = {f.rel: origin}  # what this run's read of the taken paths saw
    assert (other, _claim(db, f, origin, dict(taken), claim=True), _claim(db, f, origin, dict(taken), claim=False)) == (
        f.rel, f.rel, f.rel)
    assert db.execute("SELECT source_file FROM backfill_internal.jsonl_file_checkpoints").fetchall() == [(f.rel,)]


def test_a_changed_file_s_bars_are_decided_again_among_the_versions_a_concurrent_load_has_just_committed(
        run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    """A swing file cut short keeps its earlier content as versions and decides again the bars it had
    won, while another process loads a newer dated version of them. The decision waits for that batch
    and sees it (it used to choose among the versions stored when its statement began, and a bar the
    batch had just stored a newer version of went to an older one)."""
    import hashlib
    import threading

    from tasks.core.db import connect
    from tasks.jsonl.files import JsonlFile
    from tasks.jsonl.load import FileResult, _flush, keep_earlier_content

    root = tmp_path / "data"
    bars = [swing(symbol, START + dt.timedelta(minutes=10 * k), k) for symbol in ("005930", "000660") for k in range(5)]
    write(root / "swing" / "20260122_0000.jsonl", bars)
    write(root / "swing" / "20260122_0010.jsonl", [b | {"volume": b["volume"] + 1} for b in bars])  # the latest: it wins them all
    assert run_cli(ING, "--root", str(root)).code == 0
    newer = root / "swing" / "20260122_0005.jsonl"  # dated between the two: wins once the 00:10 file's content is only kept
    write(newer, [b | {"volume": b["volume"] + 2} for b in bars])

    def file(path: Path) -> JsonlFile:
        rel = f"swing/{path.name}"
        return JsonlFile(rel=rel, kind="swing", size=path.stat().st_size, path=path, base=root / "swing", key=rel)

    lines = newer.read_bytes().splitlines(keepends=True)
    with connect(dsn) as loader, connect(dsn, autocommit=True) as keeper, connect(dsn, autocommit=True) as watch:
        with loader.transaction():  # a batch of the newer file, not committed yet
            _flush(loader, file(newer), lines, sum(map(len, lines)), len(lines), hashlib.sha256(), FileResult(newer.name, "swing", "new"))
            worker = threading.Thread(target=keep_earlier_content, args=(keeper, file(root / "swing" / "20260122_0010.jsonl")))
            worker.start()
            deadline = dt.datetime.now() + dt.timedelta(seconds=30)
            while watch.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                                (keeper.info.backend_pid,)).fetchone() != ("Lock",):
                assert dt.datetime.now() < deadline, "the keeper never waited for the batch in flight"
        worker.join(timeout=30)
        assert not worker.is_alive()
        got = dict(((t, iso(when.astimezone(dt.UTC))), v) for t, when, v in watch.execute(
            "SELECT ticker, polled_at, volume FROM observer_bars_10m"))
    assert got == {(b["symbol"], b["ts"]): b["volume"] + 2 for b in bars}  # the newer dated version, every bar
