"""Nothing stored is lost to what happens to files and tables around a load: a followed file
rotated under the follower (logrotate's ``copytruncate``, or moved away and made anew), a day
partition dropped or detached by hand, the old table rewritten during an interrupted move."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from test.fix_db import fresh_database
from test.fix_yahoo import ROOT, cli_env
from test.in_process import run_main
from test.jsonl_tree import START, tick, write
from test.test_jsonl_ingest import ING, content, count_rows, ingest, snapshot, wait_until


def ticks(first: int, count: int, minute: int) -> list[dict]:
    """``count`` ticks of one symbol, 0.5 s apart from ``minute`` past START, each with its own values."""
    at = START + dt.timedelta(minutes=minute)
    return [tick("005930", at + dt.timedelta(milliseconds=500 * k), first + k) for k in range(count)]


def follower(root: Path, dsn: str) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """``jsonl-ingest --root ROOT --follow --poll 0.2`` running, its output lines gathered as they come."""
    proc = subprocess.Popen([sys.executable, "-m", ING, "--root", str(root), "--follow", "--poll", "0.2"], cwd=ROOT,
                            env=cli_env(None, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    return proc, lines, reader


@pytest.mark.slow
def test_a_followed_file_rotated_by_copytruncate_and_by_rename_keeps_every_tick_loaded_from_it(dsn: str, pg_server_dsn: str,
                                                                                                tmp_path: Path) -> None:
    root = tmp_path / "data"
    scalp = root / "scalp"
    name = scalp / "20260122_0100.jsonl"
    first, after_copy, after_move = ticks(0, 200, 0), ticks(1000, 50, 5), ticks(2000, 30, 10)
    write(name, first)
    proc, lines, reader = follower(root, dsn)
    try:
        assert wait_until(lambda: count_rows(dsn) == 200)
        shutil.copy(name, scalp / "20260122_0100.jsonl.1")  # logrotate copytruncate: copy, truncate, the writer goes on
        with name.open("r+") as fh:
            fh.truncate(0)
        write(name, after_copy)
        assert wait_until(lambda: count_rows(dsn) == 250), count_rows(dsn)
        name.rename(scalp / "20260122_0100.jsonl.2")  # a rename rotation: moved away, a new file of the name
        write(name, after_move)
        assert wait_until(lambda: count_rows(dsn) == 280), count_rows(dsn)
        # the pass that stored them has said so (a stop in the middle of a pass would end it unsaid)
        assert wait_until(lambda: any("the 50 ticks its earlier content stored are kept" in x for x in list(lines))), lines
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    assert proc.returncode == 0, out
    assert "Reloaded (earlier content changed: it is" in out and "shorter than the" in out, out
    assert "the 200 ticks its earlier content stored are kept, as scalp/20260122_0100.jsonl@" in out
    assert "the 50 ticks its earlier content stored are kept" in out
    loaded = sum(int(x.split(" rows loaded")[0].rsplit(" ", 1)[1].replace(",", "")) for x in out.splitlines() if " rows loaded" in x)
    assert loaded == 280  # counted truthfully: what the table holds
    with fresh_database(pg_server_dsn) as clean:  # a clean load of every content the file had, as three files
        other = tmp_path / "clean" / "scalp"
        for minute, part in (("0058", first), ("0059", after_copy), ("0100", after_move)):
            write(other / f"20260122_{minute}.jsonl", part)
        assert ingest(clean, other.parent).returncode == 0
        assert content(snapshot(dsn)) == content(snapshot(clean))


def two_days(root: Path) -> None:
    """Ticks on the 22nd and the 23rd (UTC) in one file, and on the 23rd in another."""
    night = dt.datetime(2026, 1, 22, 23, 59, tzinfo=dt.UTC)
    write(root / "scalp" / "20260122_2359.jsonl", [tick("005930", night + dt.timedelta(milliseconds=500 * k), k) for k in range(240)])
    write(root / "scalp" / "20260123_0100.jsonl", [tick("005930", night + dt.timedelta(hours=1, seconds=k), 5000 + k) for k in range(100)])


def test_a_day_partition_dropped_by_hand_is_loaded_again_and_its_bars_count_only_what_is_stored(dsn: str, pg_server_dsn: str,
                                                                                                tmp_path: Path) -> None:
    import psycopg

    root = tmp_path / "data"
    two_days(root)
    assert ingest(dsn, root).returncode == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE backfill_internal.observer_ticks_p20260122")  # an operator's hand
        assert conn.execute("SELECT count(*) FROM observer_ticks").fetchone() == (220,)  # the 23rd's
    again = ingest(dsn, root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert ("The ticks of 2026-01-22 are missing: observer_ticks_p20260122 was dropped, not by retention. Its 1-minute bars are"
            " emptied and the 1 file(s) that held them load again: scalp/20260122_2359.jsonl") in again.stdout
    assert "Reloaded (its ticks of 2026-01-22 were removed by hand" in again.stdout
    with fresh_database(pg_server_dsn) as clean:
        assert ingest(clean, root).returncode == 0
        assert snapshot(dsn) == snapshot(clean)
        status = [run_main("flows.backfill_status", ["--jsonl", "--start", "2026-01-22", "--end", "2026-01-23", "--json"],
                           cli_env(None, db), ROOT)[1] for db in (dsn, clean)]
        assert status[0] == status[1] and '"minutes"' in status[0]
    assert "missing" not in ingest(dsn, root).stdout  # mended once


def test_a_day_partition_detached_by_hand_is_attached_again_and_its_day_loads(dsn: str, pg_server_dsn: str, tmp_path: Path) -> None:
    import psycopg

    root = tmp_path / "data"
    two_days(root)
    assert ingest(dsn, root).returncode == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE observer_ticks DETACH PARTITION backfill_internal.observer_ticks_p20260123")
    on_23rd = dt.datetime(2026, 1, 23, 3, tzinfo=dt.UTC)
    more = [tick("005930", on_23rd + dt.timedelta(seconds=k), 6000 + k) for k in range(20)]  # "no partition of relation" before
    with (root / "scalp" / "20260123_0100.jsonl").open("a") as fh:
        fh.writelines(json.dumps(r, separators=(",", ":")) + "\n" for r in more)
    again = ingest(dsn, root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Attached observer_ticks_p20260123 again: it had been detached by hand" in again.stdout
    with fresh_database(pg_server_dsn) as clean:
        assert ingest(clean, root).returncode == 0
        assert snapshot(dsn) == snapshot(clean)


@pytest.mark.slow
def test_a_follower_waits_for_its_only_folder_renamed_for_a_moment(dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    write(root / "scalp" / "20260122_0100.jsonl", ticks(0, 20, 0))  # scalp/ alone, as the probe had it
    proc, lines, reader = follower(root, dsn)
    try:
        assert wait_until(lambda: count_rows(dsn) == 20)
        (root / "scalp").rename(root / "scalp.old")
        assert wait_until(lambda: any("holds no swing/, scalp/ or system/ folder now; waiting" in line for line in lines)), lines
        assert proc.poll() is None  # it used to exit 2 here
        (root / "scalp.old").rename(root / "scalp")
        write(root / "scalp" / "20260122_0105.jsonl", ticks(500, 10, 5))
        assert wait_until(lambda: count_rows(dsn) == 30 and any("is back" in line for line in lines)), lines
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
