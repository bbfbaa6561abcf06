"""Nothing stored is lost to what happens to files and tables around a load: a followed file
rotated under the follower (logrotate's ``copytruncate``, or moved away and made anew), a day
partition dropped or detached by hand, the old table rewritten during an interrupted move."""

from __future__ import annotations

import datetime as dt
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from test.fix_db import fresh_database
from test.fix_yahoo import ROOT, cli_env
from test.jsonl_tree import START, tick, write
from test.test_jsonl_ingest import ING, content, count_rows, snapshot, wait_until


def ticks(first: int, count: int, minute: int) -> list[dict]:
    """``count`` ticks of one symbol, 0.5 s apart from ``minute`` past START, each with its own values."""
    at = START + dt.timedelta(minutes=minute)
    return [tick("005930", at + dt.timedelta(milliseconds=500 * k), first + k) for k in range(count)]


@pytest.mark.slow
def test_a_followed_file_rotated_by_copytruncate_and_by_rename_keeps_every_tick_loaded_from_it(dsn: str, pg_server_dsn: str,
                                                                                                tmp_path: Path) -> None:
    root = tmp_path / "data"
    scalp = root / "scalp"
    name = scalp / "20260122_0100.jsonl"
    first, after_copy, after_move = ticks(0, 200, 0), ticks(1000, 50, 5), ticks(2000, 30, 10)
    write(name, first)
    proc = subprocess.Popen([sys.executable, "-m", ING, "--root", str(root), "--follow", "--poll", "0.2"], cwd=ROOT,
                            env=cli_env(None, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
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
        assert subprocess.run([sys.executable, "-m", ING, "--root", str(other.parent)], cwd=ROOT, env=cli_env(None, clean),
                              capture_output=True, timeout=300).returncode == 0
        assert content(snapshot(dsn)) == content(snapshot(clean))
