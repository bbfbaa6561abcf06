"""End to end: JSONL ingestion CLI against the embedded PostgreSQL, with a generated tree."""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tasks.jsonl import queries as q
from test.fix_db import fresh_database
from test.fix_yahoo import ROOT, CliRunner, cli_env, kill_9_leaving_no_orphans
from test.in_process import run_main
from test.jsonl_tree import START, expected_1m_bars, make_tree, swing, tick, write

ING = "flows.jsonl_ingest"


def snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "ticks": "SELECT ticker, event_at, written_at, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id,"
                 " mitigation_level, quality_flag, source_file, source_line FROM observer_ticks ORDER BY source_file, source_line",
        "bars": "SELECT ticker, bar_start_at, open, high, low, close, volume, tick_count, coverage_ratio FROM observer_bars_1m"
                " ORDER BY 1, 2",
        "swing": "SELECT ticker, polled_at, open, high, low, close, volume, bid_price, ask_price, session_id, source_file, source_line"
                 " FROM observer_bars_10m ORDER BY 1, 2",
        "gaps": "SELECT gap_start_at, gap_end_at, gap_seconds, scope, reason, session_id, source_file, source_line FROM observer_gaps"
                " ORDER BY 7, 8",
        "rejects": "SELECT source_file, source_line, reason FROM backfill_internal.jsonl_rejects ORDER BY 1, 2",
    }
    with psycopg.connect(dsn) as conn:
        return {k: list(conn.execute(v)) for k, v in queries.items()}  # type: ignore[arg-type]


def wait_for_checkpoints(dsn: str, at_least: int, timeout: float = 60) -> None:
    """Until a running load has committed batches of ``at_least`` files (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT count(*) FROM backfill_internal.jsonl_file_checkpoints WHERE bytes_loaded > 0").fetchone()
            if row and row[0] >= at_least:
                return
        except psycopg.Error:
            pass
        time.sleep(0.02)


def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.empty_database
def test_the_documents_layout_loads_in_one_run_as_a_flat_root_does(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                                    tmp_path: Path) -> None:
    """config/observer/{swing,scalp} (files in dated sub-folders) and logs/system/gap_*.jsonl, named by
    --swing/--scalp/--gaps, load the same rows, with the same provenance keys, as a flat --root."""
    import shutil

    tree = make_tree(tmp_path / "flat")
    doc = tmp_path / "doc"
    for kind in ("swing", "scalp"):
        for path in sorted((tree.root / kind).iterdir()):
            nested = doc / "config" / "observer" / kind / path.name[:8] / path.name  # e.g. scalp/20260122/20260122_0930.jsonl
            nested.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, nested)
    (doc / "logs" / "system").mkdir(parents=True)
    for path in (tree.root / "system").iterdir():
        shutil.copy(path, doc / "logs" / "system" / path.name)
    (doc / "logs" / "system" / "app.log").write_text("not a gap file\n", encoding="utf-8")
    observer = doc / "config" / "observer"
    result = run_cli(ING, "--swing", str(observer / "swing"), "--scalp", str(observer / "scalp"),
                     "--gaps", str(doc / "logs" / "system" / "gap_*.jsonl"), as_process=True)  # its own process, once
    assert result.code == 0, result.stdout + result.stderr
    nested = snapshot(dsn)
    assert {r[12].split("/")[1] for r in nested["ticks"]} == {p.name[:8] for p in (tree.root / "scalp").iterdir()}  # keys keep sub-folders
    with fresh_database(pg_server_dsn) as flat_dsn:
        assert run_cli(ING, "--root", str(tree.root), env={"DATABASE_URL": flat_dsn}).code == 0
        flat = snapshot(flat_dsn)
    def unnest(rows: list[tuple[Any, ...]], at: int) -> list[tuple[Any, ...]]:
        return sorted((*r[:at], "/".join(p for i, p in enumerate(r[at].split("/")) if i != 1 or not p.isdigit()), *r[at + 1:])
                      for r in rows)
    assert unnest(nested["ticks"], 12) == sorted(flat["ticks"]) and unnest(nested["swing"], 10) == sorted(flat["swing"])
    assert nested["gaps"] == flat["gaps"] and nested["bars"] == flat["bars"] and nested["rejects"] == []
    assert len(nested["ticks"]) == len(tree.all_ticks()) and len(nested["gaps"]) == 4

    a_file = tmp_path / "not-a-folder.txt"
    a_file.write_text("x", encoding="utf-8")
    for bad, message in ((["--swing", str(a_file)], "--swing"), ([], "say where the files are")):
        refused = run_cli(ING, *bad)
        assert refused.code == 2 and message in refused.stderr + refused.stdout

    # A folder that is not there (yet: an observer that has not written on this machine) is nothing
    # to load, said once; the other sources still load.
    absent = run_cli(ING, "--swing", str(doc / "nope"), "--scalp", str(doc / "nope2"), "--gaps", str(tmp_path / "none" / "gap_*.jsonl"))
    assert absent.code == 0, absent.stderr
    assert absent.stdout.count(f"Nothing to load from --swing {doc / 'nope'}: it does not exist (yet)") == 1
    assert absent.stdout.count(f"Nothing to load from --scalp {doc / 'nope2'}") == 1


def hand_coverage(ticks: list[dict], skip_newest: bool) -> tuple[int, int, dict[tuple[str, str], int]]:
    """(minutes judged, minutes below 0.8, low minutes per (symbol, day)) counted from the records."""
    per: dict[tuple[str, dt.datetime], int] = {}
    for t in ticks:
        when = ts(t["event_time"]).replace(second=0, microsecond=0)
        per[(t["symbol"], when)] = per.get((t["symbol"], when), 0) + 1
    newest = {s: max(m for (sym, m) in per if sym == s) for s, _ in per}
    judged = {k: n for k, n in per.items() if not (skip_newest and k[1] == newest[k[0]])}
    low: dict[tuple[str, str], int] = {}
    for (sym, minute), n in judged.items():
        if n / 120 < 0.8:
            low[(sym, minute.date().isoformat())] = low.get((sym, minute.date().isoformat()), 0) + 1
    return len(judged), sum(low.values()), low


def test_the_summary_and_the_coverage_report_count_low_minutes_and_critical_gaps(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=4)
    thin = [tick("005930", START + dt.timedelta(minutes=4, seconds=k), k) for k in range(0, 120, 2)]  # 60 ticks: 0.5
    thin += [tick("005930", START + dt.timedelta(minutes=5, seconds=k / 2), k) for k in range(100)]  # 100 ticks, but the newest
    write(tree.root / "scalp" / "20260122_0034.jsonl", thin)
    ticks = tree.all_ticks() + thin
    minutes, low, per_day = hand_coverage(ticks, skip_newest=True)
    assert low == 1  # the thin minute; make_tree's own minutes lack one tick in 7 (0.86)

    result = run_cli(ING, "--root", str(tree.root))
    assert result.code == 0, result.stdout + result.stderr  # warned, not failed
    assert f"Coverage: {low:,} of {minutes:,} minutes below 0.8" in result.stdout
    assert "005930 2026-01-22: " + str(per_day[("005930", "2026-01-22")]) in result.stdout
    # the tree's gaps: 90 s (scalp) and 120 s (swing) on the 22nd, 61 s (scalp) 30 hours later; 5 s is not critical
    assert "2026-01-22 scalp: 1 (longest 90 s, 90 s in all); 2026-01-22 swing: 1 (longest 120 s" in result.stdout
    assert "2026-01-23 scalp: 1 (longest 61 s" in result.stdout

    more = [tick("000660", START + dt.timedelta(minutes=m, seconds=k), k) for m in (9, 10) for k in range(0, 60, 3)]
    write(tree.root / "scalp" / "20260122_0039.jsonl", more)
    strict = run_cli(ING, "--root", str(tree.root), "--fail-on-low-coverage")
    assert strict.code == 1, strict.stdout + strict.stderr  # only the new file is judged: minute 9 (minute 10 is the newest)
    assert "Coverage: 1 of 1 minutes below 0.8 (000660 2026-01-22: 1)" in strict.stdout
    assert "Critical gaps (>= 60 s): none" in strict.stdout
    assert run_cli(ING, "--root", str(tree.root), "--fail-on-low-coverage").code == 0  # nothing new, nothing judged

    report = run_cli("flows.backfill_status", "--jsonl", "--start", "2026-01-22", "--end", "2026-01-23", "--json")
    assert report.code == 1, report.stdout + report.stderr
    data = json.loads(report.stdout)
    r_minutes, r_low, r_per_day = hand_coverage(ticks + more, skip_newest=False)
    assert (data["minutes"], data["low_minutes"]) == (r_minutes, r_low)
    assert {(d["symbol"], d["day"]): d["low_minutes"] for d in data["by_symbol_day"] if d["low_minutes"]} == r_per_day
    assert [(g["day"], g["scope"], g["count"]) for g in data["critical_gaps"]] == [("2026-01-22", "scalp", 1), ("2026-01-22", "swing", 1),
                                                                                  ("2026-01-23", "scalp", 1)]


def test_a_rewritten_swing_file_gives_back_the_bars_another_file_provides(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                                          tmp_path: Path) -> None:
    root = tmp_path / "data"
    bar = swing("005930", START, 1)
    write(root / "swing" / "20260122_0000.jsonl", [bar | {"price": {"open": 1, "high": 1, "low": 1, "close": 1}}])
    write(root / "swing" / "20260122_0010.jsonl", [bar | {"price": {"open": 2, "high": 2, "low": 2, "close": 2}}])
    assert run_cli(ING, "--root", str(root)).code == 0
    assert [(r[1], float(r[5]), r[10]) for r in snapshot(dsn)["swing"]] == [(START, 2.0, "swing/20260122_0010.jsonl")]  # later file wins
    later = swing("005930", START + dt.timedelta(minutes=20), 2)
    write(root / "swing" / "20260122_0010.jsonl", [later])  # rewritten without the 00:00 bar
    result = run_cli(ING, "--root", str(root))
    assert result.code == 0 and "Reloaded (earlier content changed: its first " in result.stdout
    assert "the 1 bar versions its earlier content stored are kept, as swing/20260122_0010.jsonl@" in result.stdout
    got = snapshot(dsn)["swing"]
    assert [(r[1], float(r[5]), r[10]) for r in got] == [(START, 1.0, "swing/20260122_0000.jsonl"),
                                                          (START + dt.timedelta(minutes=20), float(later["price"]["close"]),
                                                           "swing/20260122_0010.jsonl")]
    with fresh_database(pg_server_dsn) as clean:
        assert run_cli(ING, "--root", str(root), env={"DATABASE_URL": clean}).code == 0
        assert snapshot(clean)["swing"] == got


def test_the_same_ticks_in_two_files_are_stored_once_and_survive_either_files_rewrite(run_cli: CliRunner, dsn: str, pg_server_dsn: str,
                                                                                       tmp_path: Path) -> None:
    import shutil

    tree = make_tree(tmp_path / "data", files=2, minutes_per_file=2)
    first, second = sorted(tree.ticks)
    rotated = tree.root / "scalp" / "20260122_0100.jsonl"  # log rotation: the first file again under another name
    shutil.copy(tree.root / first, rotated)
    overlap = tree.ticks[second][:50]  # and a file that repeats part of the second one
    write(tree.root / "scalp" / "20260122_0101.jsonl", overlap)
    result = run_cli(ING, "--root", str(tree.root))
    assert result.code == 0, result.stdout + result.stderr
    assert f"{len(tree.ticks[first]) + 50:,} ticks were already stored from other files" in result.stdout
    got = snapshot(dsn)
    assert len(got["ticks"]) == len(tree.all_ticks())  # once each
    bars = {(r[0], r[1]): (r[6], r[7], r[8]) for r in got["bars"]}
    expected = expected_1m_bars(tree.all_ticks())
    assert {k: (v["volume"], v["tick_count"], pytest.approx(v["coverage_ratio"])) for k, v in expected.items()} == bars
    again = run_cli(ING, "--root", str(tree.root))  # nothing new
    assert again.code == 0 and snapshot(dsn) == got

    write(tree.root / first, tree.ticks[first][:10])  # the file that brought the ticks is cut short
    shutil.copy(tree.root / second, tree.root / "scalp" / "20260122_0102.jsonl")  # and another copy appears
    assert run_cli(ING, "--root", str(tree.root)).code == 0
    now = snapshot(dsn)
    assert len(now["ticks"]) == len(tree.all_ticks())  # the rotated copy still carries every tick of the first file
    assert {(r[0], r[1]): (r[6], r[7], r[8]) for r in now["bars"]} == bars
    with fresh_database(pg_server_dsn) as clean:
        assert run_cli(ING, "--root", str(tree.root), env={"DATABASE_URL": clean}).code == 0
        fresh = snapshot(clean)
    assert sorted(r[:12] for r in now["ticks"]) == sorted(r[:12] for r in fresh["ticks"]) and now["bars"] == fresh["bars"]


def test_loads_every_table_with_the_file_values(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data")
    result = run_cli(ING, "--root", str(tree.root))
    assert result.code == 0, result.stdout + result.stderr
    snap = snapshot(dsn)
    ticks = tree.all_ticks()
    assert len(snap["ticks"]) == len(ticks)
    first = snap["ticks"][0]
    rec = tree.ticks[first[12]][first[13] - 1]
    assert (first[0], first[1], float(first[7]), first[8]) == (rec["symbol"], ts(rec["event_time"]), rec["last_price"], rec["volume"])
    swings = [r for recs in tree.swings.values() for r in recs]
    assert len(snap["swing"]) == len(swings)
    row = snap["swing"][0]
    src = tree.swings[row[10]][row[11] - 1]
    assert (float(row[2]), float(row[3]), float(row[4]), float(row[5]), row[6], float(row[7]), float(row[8])) == (
        src["price"]["open"], src["price"]["high"], src["price"]["low"], src["price"]["close"], src["volume"], src["bid_price"],
        src["ask_price"])
    assert len(snap["gaps"]) == 4 and snap["rejects"] == []
    assert "0 lines rejected" in result.stdout


def test_1m_bars_and_coverage_match_an_independent_computation(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data", files=2, minutes_per_file=2)
    assert run_cli(ING, "--root", str(tree.root), "--batch-size", "100").code == 0
    wanted = expected_1m_bars(tree.all_ticks())
    got = {(r[0], r[1]): r for r in snapshot(dsn)["bars"]}
    assert set(got) == set(wanted)
    for key, bar in wanted.items():
        row = got[key]
        assert (float(row[2]), float(row[3]), float(row[4]), float(row[5]), row[6], row[7]) == (
            bar["open"], bar["high"], bar["low"], bar["close"], bar["volume"], bar["tick_count"])
        assert row[8] == pytest.approx(bar["coverage_ratio"])
    assert any(b["coverage_ratio"] < 1 for b in wanted.values())


def test_rerun_adds_nothing_and_appended_lines_load_alone(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data")
    assert run_cli(ING, "--root", str(tree.root)).code == 0
    before = snapshot(dsn)
    again = run_cli(ING, "--root", str(tree.root))
    assert again.code == 0 and "0 rows loaded" in again.stdout and "unchanged" in again.stdout
    assert snapshot(dsn) == before
    name = sorted(tree.ticks)[-1]
    extra_time = START + dt.timedelta(minutes=5, seconds=59)
    extra = [tick("005930", extra_time + dt.timedelta(milliseconds=100 * k), 9000 + k) for k in range(3)]
    with (tree.root / name).open("a", encoding="utf-8") as fh:
        for r in extra:
            fh.write(json.dumps(r) + "\n")
    grown = run_cli(ING, "--root", str(tree.root))
    assert grown.code == 0, grown.stderr
    assert "1 grown" in grown.stdout and "3 rows loaded" in grown.stdout
    after = snapshot(dsn)
    assert len(after["ticks"]) == len(before["ticks"]) + 3
    new_lines = [r[13] for r in after["ticks"] if r[12] == name][-3:]
    assert new_lines == [len(tree.ticks[name]) + 1, len(tree.ticks[name]) + 2, len(tree.ticks[name]) + 3]
    bars = expected_1m_bars(tree.all_ticks() + extra)
    minute = extra_time.replace(second=0)
    row = next(r for r in after["bars"] if r[0] == "005930" and r[1] == minute)
    assert row[7] == bars[("005930", minute)]["tick_count"]


def content(snap: dict[str, list[tuple[Any, ...]]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ticks (without their provenance) and the 1-minute bars: what the files say happened."""
    return sorted(r[:12] for r in snap["ticks"]), snap["bars"]


def test_a_rewritten_file_is_reloaded_keeping_every_tick_its_earlier_content_stored(run_cli: CliRunner, dsn: str, tmp_path: Path,
                                                                                    pg_server_dsn: str) -> None:
    tree = make_tree(tmp_path / "data")
    assert run_cli(ING, "--root", str(tree.root)).code == 0
    name = sorted(tree.ticks)[0]
    before = len(tree.ticks[name])
    changed = tree.ticks[name][:50]
    changed[0] = dict(changed[0], last_price=1.5)  # one new tick; 49 repeat stored ones
    write(tree.root / name, changed)
    result = run_cli(ING, "--root", str(tree.root))
    assert result.code == 0, result.stderr
    assert f"Reloaded (earlier content changed: it is {(tree.root / name).stat().st_size:,} bytes, shorter than the" in result.stdout
    kept = re.search(rf"the {before:,} ticks its earlier content stored are kept, as ({re.escape(name)}@\S+);", result.stdout)
    assert kept, result.stdout
    assert "1 rows loaded" in result.stdout and "49 ticks were already stored" in result.stdout
    with fresh_database(pg_server_dsn) as clean:  # a clean load of every content the file ever had, as two files
        write(tree.root / "scalp" / "20260122_0059.jsonl", tree.ticks[name])
        assert run_cli(ING, "--root", str(tree.root), env={"DATABASE_URL": clean}).code == 0
        assert content(snapshot(dsn)) == content(snapshot(clean))
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT source_file, count(*) FROM observer_ticks WHERE source_file LIKE %s GROUP BY 1 ORDER BY 1",
                            (name + "%",)).fetchall()
        first = conn.execute("SELECT last_price FROM observer_ticks WHERE source_file = %s AND source_line = 1", (name,)).fetchone()
    assert rows == [(name, 1), (kept.group(1), before)] and first is not None and float(first[0]) == 1.5
    again = run_cli(ING, "--root", str(tree.root / "scalp" / ".." ))  # nothing changed since: nothing moves
    assert again.code == 0 and "Reloaded" not in again.stdout


def test_bad_lines_go_to_rejects_with_their_line_numbers(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=1)
    name = sorted(tree.ticks)[0]
    good = [json.dumps(r) for r in tree.ticks[name][:10]]
    bad_neg = dict(tree.ticks[name][0], last_price=-1)
    bad_missing = {k: v for k, v in tree.ticks[name][0].items() if k != "session_id"}
    bad_naive = dict(tree.ticks[name][0], event_time="2026-01-22T09:31:05")
    bad_type = dict(tree.ticks[name][0], volume="ten")
    lines = good[:2] + ['{"symbol": "005930", broken'] + good[2:4] + [json.dumps(bad_neg), json.dumps(bad_missing)] + good[4:6] \
        + [json.dumps(bad_naive), json.dumps(bad_type), "[1, 2]"] + good[6:]
    path = tree.root / name
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"symbol": "\xff\xfe"}\n' + b"\n")
    swing_name = sorted(tree.swings)[0]
    s = tree.swings[swing_name]
    inverted = dict(s[1], price={"open": 10, "high": 5, "low": 9, "close": 6})
    write(tree.root / swing_name, [s[0], inverted] + s[2:])
    result = run_cli(ING, "--root", str(tree.root))
    assert result.code == 1, result.stdout + result.stderr
    rejects = {(f, n): r for f, n, r in snapshot(dsn)["rejects"]}
    assert rejects == {
        (name, 3): "invalid JSON",
        (name, 6): "last_price: missing, not a number, negative or too large",
        (name, 7): "session_id: missing or not a string of 1-50 characters",
        (name, 10): "event_time: missing or not an ISO-8601 time with offset",
        (name, 11): "volume: missing or not a non-negative integer",
        (name, 12): "not a JSON object",
        (name, 17): "not UTF-8 text",
        (swing_name, 2): "price: high < low",
    }
    assert f"Rejected {name}:3: invalid JSON" in result.stdout
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM observer_ticks").fetchone() == (10,)


@pytest.mark.empty_database
def test_dry_run_lists_files_and_lines_and_writes_nothing(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data")
    result = run_cli(ING, "--root", str(tree.root), "--dry-run")
    assert result.code == 0
    for name, recs in tree.ticks.items():
        assert f"{name}" in result.stdout and f"{len(recs):,} lines to load" in result.stdout
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)


def test_files_with_other_names_are_said_to_be_left_out(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=1)
    live = tree.root / "scalp" / "live.jsonl"
    write(live, [tick("005930", START, 1)])
    (tree.root / "scalp" / "notes.txt").write_text("not data", encoding="utf-8")  # not .jsonl at all: not worth a word
    result = run_cli(ING, "--root", str(tree.root))
    assert result.code == 0, result.stdout + result.stderr
    assert result.stdout.count(f"Left out {live}: not named like a scalp file (YYYYMMDD_HHMM.jsonl)") == 1
    assert "notes.txt" not in result.stdout
    assert count_rows(dsn) == len(tree.all_ticks())


def test_bad_root_is_a_clear_error(run_cli: CliRunner, tmp_path: Path) -> None:
    result = run_cli(ING, "--root", str(tmp_path / "nope"))
    assert result.code == 2 and "is not a directory" in result.stderr
    polled = run_cli(ING, "--root", str(tmp_path), "--poll", "2")  # --poll means nothing without --follow: said, not ignored
    assert polled.code == 2 and "--poll" in polled.stderr and "--follow" in polled.stderr


def test_the_command_starts_without_the_fetching_libraries() -> None:
    # pandas, curl and yfinance cost each JSONL command (and each spawned loader process) ~0.3 s of
    # imports it never uses.
    code = "import sys, flows.jsonl_ingest; print(sorted({'pandas', 'curl_cffi', 'yfinance', 'prefect'} & set(sys.modules)))"
    shown = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert (shown.returncode, shown.stdout.strip()) == (0, "[]"), shown.stderr


def ingest(dsn: str, root: Path) -> subprocess.CompletedProcess[str]:
    """One plain ``jsonl-ingest --root ROOT`` into ``dsn`` (the clean run an interrupted one is
    compared with, a rerun), its ``main`` in this process (test/in_process.py)."""
    args = ["--root", str(root)]
    code, out, err = run_main(ING, args, cli_env(None, dsn), ROOT)
    return subprocess.CompletedProcess([ING, *args], code, out, err)


def count_rows(dsn: str, table: str = "observer_ticks") -> int:
    """Rows in ``table`` now (0 before the run has created it)."""
    with psycopg.connect(dsn) as conn:
        if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,):
            return 0
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # type: ignore[arg-type]  # noqa: S608
    return int(row[0]) if row else 0


def wait_until(check: Any, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_follow_loads_what_files_grow_by_and_new_files_waits_for_a_partial_line_and_stops_on_sigterm(dsn: str, pg_server_dsn: str,
                                                                                                      tmp_path: Path) -> None:
    import signal

    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=1)
    first = len(tree.all_ticks())
    import threading

    args = [sys.executable, "-m", ING, "--root", str(tree.root), "--follow", "--poll", "0.2"]
    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(None, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        assert wait_until(lambda: count_rows(dsn) == first)
        (name,) = tree.ticks
        extra = [tick("005930", START + dt.timedelta(minutes=1, seconds=k), 900 + k) for k in range(3)]
        with (tree.root / name).open("a", encoding="utf-8") as fh:  # two whole lines and half of the third
            fh.write(json.dumps(extra[0]) + "\n" + json.dumps(extra[1]) + "\n" + json.dumps(extra[2])[:25])
        assert wait_until(lambda: count_rows(dsn) == first + 2)
        # Each pass that reads the half line says so: three of them (the one that loaded the two whole
        # lines and two more), and the half line is still not loaded.
        waiting = f"{name} ends in an incomplete line: left for the next run"
        assert wait_until(lambda: sum(waiting in line for line in list(lines)) >= 3, timeout=60)
        assert count_rows(dsn) == first + 2
        with (tree.root / name).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(extra[2])[25:] + "\n")
        later = [tick("000660", START + dt.timedelta(minutes=2, seconds=k), 950 + k) for k in range(5)]
        write(tree.root / "scalp" / "20260122_0032.jsonl", later)  # a new file
        assert wait_until(lambda: count_rows(dsn) == first + 3 + 5)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # seen once in a full run: say where it hangs (faulthandler on SIGABRT)
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=10)
            raise AssertionError("no stop 30 s after SIGTERM:\n" + "".join(lines) + proc.stderr.read()) from None  # type: ignore[union-attr]
        reader.join(timeout=10)
        err = proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    assert proc.returncode == 0, out + err
    assert f"Following --root {tree.root} every 0.2 s" in out and "Stopped following after" in out
    with fresh_database(pg_server_dsn) as clean:  # the same tables as one run over the final files
        assert ingest(clean, tree.root).returncode == 0
        assert snapshot(dsn) == snapshot(clean)


@pytest.mark.slow
def test_a_follower_waits_for_a_root_that_goes_away_for_a_moment(dsn: str, tmp_path: Path) -> None:
    import signal
    import threading

    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=1)
    first = len(tree.all_ticks())
    proc = subprocess.Popen([sys.executable, "-m", ING, "--root", str(tree.root), "--follow", "--poll", "0.2"], cwd=ROOT,
                            env=cli_env(None, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        assert wait_until(lambda: count_rows(dsn) == first, timeout=60)
        moved = tmp_path / "moved"
        tree.root.rename(moved)  # renamed away (a rotation, a remount) ...
        assert wait_until(lambda: any("is gone; waiting for it to come back" in line for line in lines), timeout=60), lines
        assert proc.poll() is None
        moved.rename(tree.root)  # ... and back, with a new file
        write(tree.root / "scalp" / "20260122_0032.jsonl", [tick("000660", START + dt.timedelta(minutes=2, seconds=k), 950 + k)
                                                           for k in range(5)])
        assert wait_until(lambda: count_rows(dsn) == first + 5 and any("is back" in line for line in lines), timeout=60), lines
        os.killpg(proc.pid, signal.SIGTERM)  # as systemd and docker stop it: the whole group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=10)
    assert proc.returncode == 0, "".join(lines) + err
    assert sum("is gone; waiting for it to come back" in line for line in lines) == 1, lines


@pytest.mark.slow
def test_a_stop_sent_to_the_process_group_of_uv_run_ends_follow_mode_with_exit_0_every_time(dsn: str, tmp_path: Path) -> None:
    """systemd and docker signal the whole group; `uv run` forwards the signal too, so the command
    gets SIGTERM twice: the second must not change the outcome (exit 0 in follow mode)."""
    import shutil
    import signal

    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (CI installs it)")
    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=1)
    codes, errors = [], []
    for _ in range(4):
        proc = subprocess.Popen([uv, "run", "--no-sync", "jsonl-ingest", "--root", str(tree.root), "--follow", "--poll", "0.3"],
                                cwd=ROOT, env=cli_env(None, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            assert proc.stdout is not None
            while "Following" not in proc.stdout.readline():
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            os.killpg(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        codes.append(proc.returncode)
        errors.append(err)
    assert codes == [0, 0, 0, 0], (codes, errors)
    assert not [e for e in errors if "Traceback" in e or "Exception ignored" in e], errors


@pytest.mark.slow
def test_loaders_whose_connections_are_killed_retry_from_their_checkpoints_and_end_as_a_clean_run(dsn: str, pg_server_dsn: str,
                                                                                                  tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data", files=4, minutes_per_file=40)  # ~33k lines in 100-line batches: seconds of loading
    args = [sys.executable, "-m", ING, "--root", str(tree.root), "--batch-size", "100", "--concurrency", "2"]
    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(None, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_checkpoints(dsn, 1)
    with psycopg.connect(dsn, autocommit=True) as conn:  # what a server restart or a DBA does to the loaders
        killed = conn.execute("SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                              " WHERE datname = current_database() AND application_name = 'market-backfill'").fetchone()
    out, err = proc.communicate(timeout=300)
    assert killed and killed[0] >= 1
    assert proc.returncode == 0, out + err
    assert "database error, retrying from its checkpoint (attempt 2 of 4)" in out
    assert "loaded after 1 database error(s), from its checkpoint" in out
    with fresh_database(pg_server_dsn) as clean:
        assert ingest(clean, tree.root).returncode == 0
        assert snapshot(dsn) == snapshot(clean)


@pytest.mark.slow
@pytest.mark.reliability
def test_kill_9_mid_file_then_rerun_equals_a_clean_run(fake_yahoo: Any, dsn: str, pg_server_dsn: str, tmp_path: Path,
                                                       run_cli: CliRunner) -> None:
    tree = make_tree(tmp_path / "data", files=3, minutes_per_file=20)
    args = [sys.executable, "-m", ING, "--root", str(tree.root), "--batch-size", "200", "--concurrency", "2"]
    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(None, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_checkpoints(dsn, 2)
    kill_9_leaving_no_orphans(proc)
    partial = snapshot(dsn)
    assert 0 < len(partial["ticks"]) < len(tree.all_ticks())
    assert run_cli(ING, "--root", str(tree.root), "--batch-size", "200").code == 0

    with fresh_database(pg_server_dsn) as clean:
        assert ingest(clean, tree.root).returncode == 0
        assert snapshot(dsn) == snapshot(clean)


def test_query_functions(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data")
    assert run_cli(ING, "--root", str(tree.root)).code == 0
    with psycopg.connect(dsn) as conn:
        latest = q.get_latest_bars(conn, "005930", 2)
        swings = sorted((r for recs in tree.swings.values() for r in recs if r["symbol"] == "005930"), key=lambda r: r["ts"])
        assert [b["bar_time"] for b in latest] == [ts(swings[-1]["ts"]), ts(swings[-2]["ts"])]
        ranged = q.get_bars_in_range(conn, "005930", ts(swings[0]["ts"]), ts(swings[2]["ts"]))
        assert [b["bar_time"] for b in ranged] == [ts(s["ts"]) for s in swings[:2]]
        ticks = sorted((t for t in tree.all_ticks() if t["symbol"] == "000660"), key=lambda t: t["event_time"])
        assert [t["event_time"] for t in q.get_latest_ticks(conn, "000660", 3)] == [ts(t["event_time"]) for t in ticks[::-1][:3]]
        window = q.get_ticks_in_range(conn, "000660", ts(ticks[10]["event_time"]), ts(ticks[20]["event_time"]))
        assert [t["event_time"] for t in window] == [ts(t["event_time"]) for t in ticks[10:20]]
        bars = q.get_1m_bars(conn, "000660", START, START + dt.timedelta(minutes=2))
        wanted = expected_1m_bars(tree.all_ticks())
        assert [(b["bar_time"], b["tick_count"]) for b in bars] == [
            (k[1], v["tick_count"]) for k, v in sorted(wanted.items()) if k[0] == "000660" and k[1] < START + dt.timedelta(minutes=2)]
        day = START.date()
        assert q.count_gaps(conn, "scalp", day, day) == 2  # the third scalp gap starts the next day
        assert q.count_gaps(conn, "swing", day, day) == 1
        assert q.count_gaps(conn, "scalp", day + dt.timedelta(days=1), day + dt.timedelta(days=1)) == 1
        critical = q.get_critical_gaps(conn, day, day + dt.timedelta(days=1))
        assert [g["gap_seconds"] for g in critical] == [120, 90, 61]


def test_files_sharing_minutes_loaded_concurrently_give_exact_bars(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    ticks_a = [tick("005930", START + dt.timedelta(milliseconds=250 * k), k) for k in range(600)]
    ticks_b = [tick("005930", START + dt.timedelta(milliseconds=250 * k + 125), 1000 + k) for k in range(600)]
    write(root / "scalp" / "20260122_0030.jsonl", ticks_a)
    write(root / "scalp" / "20260122_0031.jsonl", ticks_b)
    result = run_cli(ING, "--root", str(root), "--concurrency", "2", "--batch-size", "100")
    assert result.code == 0, result.stdout + result.stderr
    wanted = expected_1m_bars(ticks_a + ticks_b)
    got = {(r[0], r[1]): r for r in snapshot(dsn)["bars"]}
    assert {k: (v[6], v[7]) for k, v in got.items()} == {k: (v["volume"], v["tick_count"]) for k, v in wanted.items()}


def test_lines_postgresql_would_refuse_are_rejected_one_by_one_and_the_rest_loads(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=1)
    name = sorted(tree.ticks)[0]
    ticks = tree.ticks[name]
    rounding_up = dict(ticks[0], last_price=99999999999.99995)  # rounds to 1e11 at numeric(15,4): out of range
    far_offset = dict(ticks[0], event_time="2026-01-22T09:31:05.000+23:59")
    huge_volume = dict(ticks[0], volume=9 * 10**17)  # a minute's sum of a few of these overflows bigint
    # Outside Python's datetime once in UTC (year 10000, year 0), or outside the project's 1900..2199:
    out_of_range = [dict(ticks[0], event_time=t) for t in ("9999-12-31T23:59:59.999999-01:00", "0001-01-01T00:30:00+01:00",
                                                           "1899-12-31T23:59:59Z", "2200-01-01T00:00:00Z")]
    lines = [json.dumps(r) for r in ticks[:5]] + [json.dumps(rounding_up), json.dumps(far_offset)] \
        + [json.dumps(huge_volume)] * 12 + [json.dumps(r) for r in out_of_range] + [json.dumps(r) for r in ticks[5:]]
    (tree.root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli(ING, "--root", str(tree.root))
    assert result.code == 1, result.stdout + result.stderr  # rejects, not a failed file
    assert "Failed" not in result.stdout
    rejects = {n: r for f, n, r in snapshot(dsn)["rejects"] if f == name}
    assert rejects[6] == "last_price: missing, not a number, negative or too large"
    assert rejects[7] == "event_time: UTC offset beyond +-15:59"
    assert all(rejects[n] == "volume: missing or not a non-negative integer" for n in range(8, 20))
    assert [rejects[n] for n in range(20, 24)] == ["event_time: out of range (1900..2199 in UTC)"] * 4
    assert "Traceback" not in result.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM observer_ticks").fetchone() == (len(ticks),)


def test_file_locks_do_not_collide_for_names_whose_32_bit_hashes_do(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    from tasks.jsonl.load import lock_key

    held, other = "scalp/20240104_1147.jsonl", "scalp/20260916_2023.jsonl"  # hashtext('jsonl:' + name) is equal for both
    root = tmp_path / "data"
    for n, rel in enumerate((held, other)):
        write(root / rel, [tick("005930", START + dt.timedelta(seconds=n * 60 + i / 2), i) for i in range(20)])
    with psycopg.connect(dsn, autocommit=True) as holder:  # another loader is busy with `held`, however it keys its lock
        holder.execute("SELECT pg_advisory_lock(%s), pg_advisory_lock(hashtext(%s))", (lock_key(held), f"jsonl:{held}"))
        result = run_cli(ING, "--root", str(root), "--concurrency", "1")
    assert result.code == 0, result.stdout + result.stderr
    with psycopg.connect(dsn) as conn:
        counts = dict(conn.execute("SELECT source_file, count(*) FROM observer_ticks GROUP BY 1").fetchall())
    assert counts == {other: 20}  # the busy file waits for its loader; the other is not mistaken for it


def test_links_fifos_and_over_long_lines_are_never_followed_read_or_kept(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    import os

    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=1)
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_text("root:$6$notjson:19000:0:99999:7:::\n", encoding="utf-8")
    (tree.root / "system").mkdir(exist_ok=True)
    os.symlink(secret, tree.root / "system" / "gap_20990101.jsonl")  # a link out of the root
    os.mkfifo(tree.root / "scalp" / "20260122_0999.jsonl")  # would block a reader forever
    name = sorted(tree.ticks)[0]
    ticks = tree.ticks[name]
    long_line = '{"symbol": "' + "x" * (2 << 20) + '"}'
    (tree.root / name).write_text("\n".join([json.dumps(ticks[0]), long_line, *map(json.dumps, ticks[1:])]) + "\n"
                                  + "y" * (3 << 20), encoding="utf-8")  # and an unterminated 3 MiB tail
    result = run_cli(ING, "--root", str(tree.root), timeout=120)
    assert result.code == 1, result.stdout + result.stderr  # the long line is a reject
    assert f"{name} ends in an incomplete line" in result.stdout
    with psycopg.connect(dsn) as conn:
        rejects = conn.execute("SELECT source_file, source_line, reason, raw FROM backfill_internal.jsonl_rejects").fetchall()
        loaded = conn.execute("SELECT count(*) FROM observer_ticks").fetchone()
        files = [r[0] for r in conn.execute("SELECT source_file FROM backfill_internal.jsonl_file_checkpoints")]
    assert [(f, n, why) for f, n, why, _ in rejects] == [(name, 2, "line longer than 1 MiB")]
    assert len(rejects[0][3]) < 100 and rejects[0][3].startswith("[more than 1,048,576 bytes] ")
    assert loaded == (len(ticks),)
    assert not any("gap_20990101" in f or "0999" in f for f in files)
    assert "notjson" not in str(rejects) and "root:" not in result.stdout + result.stderr


def test_a_non_json_line_is_kept_as_its_length_and_a_short_head(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=1)
    name = sorted(tree.ticks)[0]
    garbage = "password=hunter2 " + "z" * 500
    (tree.root / name).write_text(garbage + "\n" + "\n".join(map(json.dumps, tree.ticks[name])) + "\n", encoding="utf-8")
    assert run_cli(ING, "--root", str(tree.root)).code == 1
    with psycopg.connect(dsn) as conn:
        ((reason, raw),) = conn.execute("SELECT reason, raw FROM backfill_internal.jsonl_rejects").fetchall()
    assert reason == "invalid JSON" and raw == f"[{len(garbage):,} bytes] " + garbage[:40]


@pytest.mark.slow
@pytest.mark.reliability
@pytest.mark.parametrize("target, method", [("group", "fork"), ("main", "fork"), ("group", "spawn")])
def test_sigterm_stops_within_seconds_keeps_what_committed_and_the_rerun_completes(dsn: str, tmp_path: Path, run_cli: CliRunner,
                                                                                 target: str, method: str) -> None:
    """Stopped with its process group (a supervisor's way) or alone; loader processes forked or
    spawned (Windows' way)."""
    import os
    import signal

    tree = make_tree(tmp_path / "data", files=12, minutes_per_file=40)  # ~100k ticks in 1,000 batches: several seconds
    args = [sys.executable, "-m", ING, "--root", str(tree.root), "--batch-size", "100", "--concurrency", "2"]
    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(None, dsn, BACKFILL_START_METHOD=method), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for_checkpoints(dsn, 1)  # stop it once it has committed something
    stopped_at = time.monotonic()
    if target == "group":
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - stopped_at
    assert took < 10, f"took {took:.1f} s to stop"
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "Run the same command to continue" in out, out + err
    assert f"loader processes ({method})" in out
    partial = snapshot(dsn)
    assert 0 < len(partial["ticks"]) < len(tree.all_ticks())  # it stopped, and what committed stayed
    assert run_cli(ING, "--root", str(tree.root)).code == 0
    assert sorted(t[:9] for t in snapshot(dsn)["ticks"]) == sorted(
        (t["symbol"], ts(t["event_time"]), ts(t["ts"]), t["bid_price"], t["ask_price"], t["bid_size"], t["ask_size"],
         t["last_price"], t["volume"]) for t in tree.all_ticks())


def test_two_runs_at_once_both_succeed_and_store_each_line_once(dsn: str, pg_server_dsn: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "data", files=8, minutes_per_file=10)
    args = [sys.executable, "-m", ING, "--root", str(tree.root), "--batch-size", "500", "--concurrency", "2"]
    procs = [subprocess.Popen(args, cwd=ROOT, env=cli_env(None, dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert not any("duplicate key" in out + err for out, err in outputs)
    with fresh_database(pg_server_dsn) as clean:
        done = ingest(clean, tree.root)
        assert done.returncode == 0, done.stderr
        got, want = snapshot(dsn), snapshot(clean)
        # On a mismatch, say what differs (rows per table and per file) and what the two runs said. (Failed
        # 1 in ~30 until a path claimed by the other run was no longer taken for another origin's.)
        files = [collections.Counter(r[12] for r in snap["ticks"]) for snap in (got, want)]
        assert got == want, ({k: (len(got[k]), len(want[k])) for k in got}, files, outputs)


def checkpoint(dsn: str, rel: str) -> tuple[int, int, str] | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT bytes_loaded, lines_loaded, prefix_sha256 FROM backfill_internal.jsonl_file_checkpoints"
                           " WHERE source_file = %s",
                           (rel,)).fetchone()
    return None if row is None else (int(row[0]), int(row[1]), row[2])


def test_a_big_file_loads_in_pieces_as_one_process_loads_it(run_cli: CliRunner, dsn: str, pg_server_dsn: str, tmp_path: Path) -> None:
    import hashlib
    import os

    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=40)
    (name,) = tree.ticks
    path = tree.root / name
    with path.open("ab") as fh:  # a reject near the end, then a line its writer is still writing
        fh.write(b'{"symbol": "005930"}\n')
    complete = path.read_bytes()
    with path.open("ab") as fh:
        fh.write(b'{"ts": "2026-01-22T')
    pieced = ["--root", str(tree.root), "--concurrency", "4", "--split-mb", "0.4", "--batch-size", "500"]
    result = run_cli(ING, *pieced)
    assert result.code == 1, result.stdout + result.stderr  # the rejected line
    pieces = min(4, max(2, os.cpu_count() or 1))  # one per core at most
    assert f"{name} new in {pieces} pieces: {len(tree.ticks[name]):,} rows, 1 rejected" in result.stdout
    assert f"Rejected {name}:{len(tree.ticks[name]) + 1}: event_time: missing or not an ISO-8601 time with offset" in result.stdout
    assert f"{name} ends in an incomplete line: left for the next run" in result.stdout
    assert checkpoint(dsn, name) == (len(complete), len(tree.ticks[name]) + 1, hashlib.sha256(complete).hexdigest())
    got = snapshot(dsn)
    expected = expected_1m_bars(tree.all_ticks())
    assert {(r[0], r[1]): (r[2], r[5], r[6], r[7]) for r in got["bars"]} == {
        k: (v["open"], v["close"], v["volume"], v["tick_count"]) for k, v in expected.items()}
    with fresh_database(pg_server_dsn) as one:
        assert run_cli(ING, "--root", str(tree.root), "--split-mb", "0", env={"DATABASE_URL": one}).code == 1
        assert snapshot(one) == got
    with fresh_database(pg_server_dsn) as spawned:  # Windows' way: the pieces' loaders spawned, not forked
        result = run_cli(ING, *pieced, env={"DATABASE_URL": spawned, "BACKFILL_START_METHOD": "spawn"})
        assert result.code == 1 and "loader processes (spawn)" in result.stdout, result.stdout + result.stderr
        assert snapshot(spawned) == got

    assert run_cli(ING, *pieced).code == 0 and snapshot(dsn) == got  # the partial line still waits; nothing else to do
    more = [tick("005930", START + dt.timedelta(hours=2, seconds=i), i) for i in range(30)]
    with path.open("ab") as fh:
        fh.write(b'00:30:00.000Z", "event_time": "2026-01-22T00:30:00.250Z", "symbol": "000660", "bid_price": 1, "ask_price": 2,'
                 b' "bid_size": 1, "ask_size": 1, "last_price": 1.5, "volume": 1, "session_id": "s"}\n')
        fh.write("".join(json.dumps(t) + "\n" for t in more).encode())
    grown = run_cli(ING, *pieced)
    assert grown.code == 0 and "31 rows loaded" in grown.stdout
    assert len(snapshot(dsn)["ticks"]) == len(tree.ticks[name]) + 31


@pytest.mark.slow
@pytest.mark.reliability
def test_kill_9_while_pieces_of_a_file_load_then_rerun_equals_a_one_process_load(dsn: str, pg_server_dsn: str, tmp_path: Path,
                                                                                  run_cli: CliRunner) -> None:
    tree = make_tree(tmp_path / "data", files=1, minutes_per_file=150)
    (name,) = tree.ticks
    args = ["--root", str(tree.root), "--concurrency", "4", "--split-mb", "1", "--batch-size", "200"]
    proc = subprocess.Popen([sys.executable, "-m", ING, *args], cwd=ROOT, env=cli_env(None, dsn), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)

    def rows_past_the_checkpoint() -> bool:
        try:
            with psycopg.connect(dsn) as conn:
                row = conn.execute("SELECT count(*) FROM observer_ticks WHERE source_line > coalesce((SELECT lines_loaded FROM"
                                   " backfill_internal.jsonl_file_checkpoints WHERE source_file = %s), 0)", (name,)).fetchone()
            return bool(row and row[0] > 400)
        except psycopg.Error:
            return False

    assert wait_until(rows_past_the_checkpoint), "the pieces after the first never committed anything"
    kill_9_leaving_no_orphans(proc)
    partial = snapshot(dsn)
    assert 0 < len(partial["ticks"]) < len(tree.all_ticks())
    again = run_cli(ING, *args)
    assert again.code == 0, again.stdout + again.stderr
    with fresh_database(pg_server_dsn) as one:
        assert run_cli(ING, "--root", str(tree.root), "--split-mb", "0", env={"DATABASE_URL": one}).code == 0
        assert snapshot(dsn) == snapshot(one)
        assert checkpoint(dsn, name) == checkpoint(one, name)


def test_a_tick_s_key_is_what_the_database_computes_and_one_tick_spelled_two_ways_is_stored_once(run_cli: CliRunner, dsn: str,
                                                                                                  tmp_path: Path) -> None:
    base = tick("005930", START, 1)
    odd = [base | {"bid_price": 1.00005, "ask_price": 0.00005, "last_price": 2.675, "ts": None},
           base | {"symbol": "tab\tand\\slash", "event_time": "2026-01-22T09:30:00.5+09:00", "quality_flag": "stale"},
           base | {"symbol": "삼성전자", "last_price": 98765432109.8765, "event_time": "2026-01-22T00:30:00.123456-05:30"},
           base | {"event_time": "2026-01-22 00:30:00Z", "mitigation_level": -3, "volume": 0}]
    same = json.dumps(base).replace('"last_price": ' + str(base["last_price"]), '"last_price": ' + f'{base["last_price"]}.0')
    same = same.replace('"event_time": "2026-01-22T00:30:00.000Z"', '"event_time": "2026-01-22T00:30:00+00:00"')
    assert same != json.dumps(base)
    write(tmp_path / "data" / "scalp" / "20260122_0030.jsonl", [base, *odd])
    (tmp_path / "data" / "scalp" / "20260122_0031.jsonl").write_text('{"extra": [1], ' + same[1:] + "\n", encoding="utf-8")
    result = run_cli(ING, "--root", str(tmp_path / "data"))
    assert result.code == 0, result.stdout + result.stderr
    assert "1 ticks were already stored from other files" in result.stdout
    with psycopg.connect(dsn) as conn:
        keys = conn.execute("SELECT ticker, tick_key = scalp_tick_key(ticker, event_at, written_at, bid_price, ask_price, bid_size,"
                            " ask_size, last_price, volume, session_id, mitigation_level, quality_flag) FROM observer_ticks").fetchall()
        copies = conn.execute("SELECT source_file, source_line FROM backfill_internal.scalp_tick_copies").fetchall()
        prices = conn.execute("SELECT bid_price, ask_price, last_price FROM observer_ticks WHERE written_at IS NULL").fetchone()
    assert sorted(keys) == sorted((t["symbol"], True) for t in [base, *odd])  # the tab and backslash arrive as written
    # one of the two lines holds the tick, the other is its copy: which, depends on which file loaded first
    assert len(copies) == 1 and copies[0] in {("scalp/20260122_0030.jsonl", 1), ("scalp/20260122_0031.jsonl", 1)}
    from decimal import Decimal
    assert prices == (Decimal("1.0001"), Decimal("0.0001"), Decimal("2.6750"))  # numeric rounds half away from zero


def test_migration_013_keys_every_stored_tick_again_and_a_tick_stored_twice_becomes_a_copy(pg_server_dsn: str) -> None:
    import uuid

    from tasks.core.db import migrate
    from tasks.jsonl.upgrade import finish_moves
    from test.fix_db import migrate_before

    insert = ("INSERT INTO scalp_ticks (symbol, event_time, ts, bid_price, ask_price, bid_size, ask_size, last_price, volume, session_id,"
              " source_file, source_line, tick_key) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    first = ("005930", "2026-01-22T00:30:00Z", None, 100, 101, 1, 2, 100.5, 7, "s")
    second = ("005930", "2026-01-22T00:30:00.5Z", "2026-01-22T00:30:00.6Z", 100, 101, 1, 2, 99.25, 3, "s")
    old_key = uuid.uuid4()
    with fresh_database(pg_server_dsn) as url, psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():  # the schema as it was before 013, with ticks loaded then
            migrate_before(conn, "013")
            conn.execute(insert, (*first, "scalp/a.jsonl", 1, None))  # no key: loaded before 011
            conn.execute(insert, (*first, "scalp/b.jsonl", 1, None))  # the same tick again
            conn.execute(insert, (*second, "scalp/a.jsonl", 2, old_key))  # keyed as 011 did
            conn.execute("INSERT INTO scalp_tick_copies VALUES ('scalp/c.jsonl', 5, %s)", (old_key,))  # before 030: beside the data
            conn.execute("INSERT INTO scalp_1m_bars (symbol, bar_time, open, high, low, close, volume, tick_count, coverage_ratio,"
                         " session_id, open_time, open_file, open_line, close_time, close_file, close_line) VALUES ('005930',"
                         " '2026-01-22T00:30Z', 100.5, 100.5, 99.25, 99.25, 17, 3, 0.025, 's', '2026-01-22T00:30Z', 'scalp/a.jsonl', 1,"
                         " '2026-01-22T00:30:00.5Z', 'scalp/a.jsonl', 2)")
        assert [v for v in migrate(conn) if v.startswith("013")]
        finish_moves(conn, lambda _: None)  # and into day partitions (017), as the first command that reads ticks does
        ticks = conn.execute("SELECT source_file, source_line, tick_key = scalp_tick_key(ticker, event_at, written_at, bid_price,"
                             " ask_price, bid_size, ask_size, last_price, volume, session_id, mitigation_level, quality_flag), tick_key"
                             " FROM observer_ticks ORDER BY 1, 2").fetchall()
        copies = dict(((f, n), k) for f, n, k in conn.execute("SELECT * FROM backfill_internal.scalp_tick_copies"))
        bar = conn.execute("SELECT open, high, low, close, volume, tick_count FROM observer_bars_1m").fetchall()
    assert [t[:3] for t in ticks] == [("scalp/a.jsonl", 1, True), ("scalp/a.jsonl", 2, True)]
    assert copies == {("scalp/b.jsonl", 1): ticks[0][3], ("scalp/c.jsonl", 5): ticks[1][3]}
    from decimal import Decimal
    assert bar == [(Decimal("100.5000"), Decimal("100.5000"), Decimal("99.2500"), Decimal("99.2500"), 10, 2)]
