"""`event-report`: the event study from stored bars, checked against a hand computation."""

from __future__ import annotations

import datetime as dt
import json
import statistics
import struct
from pathlib import Path
from typing import Any

import psycopg
import pytest

from test.fix_yahoo import CliRunner
from test.nyse_days import trading_days

REPORT = "flows.event_report"
DAYS = trading_days(dt.date(2025, 1, 2), dt.date(2025, 6, 30))
MISSING = ("BBB", DAYS[33])  # one stored bar missing: the events that need it leave it out


def adj(ticker: str, i: int) -> float:
    """A price path per ticker with ups and downs (so medians, shares and bands are not trivial)."""
    base = {"AAA": 50.0, "BBB": 20.0, "SPY": 500.0}[ticker]
    return round(base * (1 + 0.01 * ((i * 7 + len(ticker) * 3) % 11 - 5) / 5) * (1.001 ** i), 4)


EVENTS = [  # ticker, base session index, source, reaction, event time (after that session's close, New York)
    ("AAA", 30, "news", "positive"), ("AAA", 41, "news", "negative"), ("BBB", 30, "news", "neutral"),
    ("BBB", 60, "filing", "positive"), ("AAA", 70, "filing", None), ("BBB", 90, "filing", "negative"),
]


@pytest.fixture
def stored(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    rows = [(t, d, adj(t, i)) for t in ("AAA", "BBB") for i, d in enumerate(DAYS) if (t, d) != MISSING]
    with db.cursor() as cur:
        cur.executemany("INSERT INTO stock_daily_bars (ticker, trade_date, open, high, low, close, adj_close, volume)"
                        " VALUES (%s, %s, 1, 1, 1, 1, %s, 1)", rows)
        cur.executemany("INSERT INTO etf_daily_bars (ticker, trade_date, open, high, low, close, adj_close, volume)"
                        " VALUES ('SPY', %s, 1, 1, 1, 1, %s, 1)", [(d, adj("SPY", i)) for i, d in enumerate(DAYS)])
        cur.executemany("INSERT INTO events (ticker, event_at, source, base_date, reaction, valuation_status)"
                        " VALUES (%s, %s, %s, %s, %s, 'ok')",
                        [(t, dt.datetime.combine(DAYS[b], dt.time(22, 0), dt.UTC), s, DAYS[b], r) for t, b, s, r in EVENTS])
        cur.execute("INSERT INTO events (ticker, event_at, source, valuation_status) VALUES ('AAA', now(), 'news', 'no_data')")
    return db


def hand_car(ticker: str, b: int, k: int) -> float | None:
    """CAR(k) of one event by the definition, from the same prices the fixture stored."""
    if (ticker, DAYS[b + k]) == MISSING:
        return None
    return (adj(ticker, b + k) / adj(ticker, b) - 1) - (adj("SPY", b + k) / adj("SPY", b) - 1)


def hand_study(source: str) -> dict[str, Any]:
    mine = [e for e in EVENTS if e[2] == source]
    out: dict[str, Any] = {"events": len(mine), "mean": {}, "median": {}, "caar": {}}
    for k in (1, 5, 20):
        values = [c for t, b, _, _ in mine if (c := hand_car(t, b, k)) is not None]
        out["mean"][k], out["median"][k] = statistics.fmean(values), statistics.median(values)
    for k in range(-5, 21):
        values = [c for t, b, _, _ in mine if (c := hand_car(t, b, k)) is not None]
        half = 1.96 * statistics.stdev(values) / len(values) ** 0.5
        out["caar"][k] = (statistics.fmean(values), statistics.fmean(values) - half, statistics.fmean(values) + half, len(values))
    known = [r for *_, r in mine if r is not None]
    out["shares"] = {r: known.count(r) / len(known) for r in ("positive", "negative", "neutral")}
    return out


def test_the_study_matches_a_hand_computation(run_cli: CliRunner, stored: psycopg.Connection[Any]) -> None:
    result = run_cli(REPORT, "--json", as_process=True)  # the command as its own process, once
    assert result.code == 0, result.stderr
    report = {s["source"]: s for s in json.loads(result.stdout)["sources"]}
    assert sorted(report) == ["filing", "news"]
    for source, got in report.items():
        want = hand_study(source)
        assert got["events"] == want["events"]
        for k in (1, 5, 20):
            assert got["mean_excess"][f"+{k}"] == pytest.approx(want["mean"][k], abs=1e-12)
            assert got["median_excess"][f"+{k}"] == pytest.approx(want["median"][k], abs=1e-12)
        assert got["reaction_share"] == pytest.approx(want["shares"])
        caar = {row["k"]: (row["caar"], row["lo"], row["hi"], row["n"]) for row in got["caar"]}
        assert sorted(caar) == list(range(-5, 21))
        for k, (mean, lo, hi, n) in want["caar"].items():
            assert caar[k] == pytest.approx((mean, lo, hi, n), abs=1e-12), (source, k)
    # the missing BBB bar (session 33) is left out of news' CAAR(3) only: BBB's news event has base 30
    assert report["news"]["caar"][3 + 5]["n"] == 2 and report["news"]["caar"][4 + 5]["n"] == 3


def test_filters_the_table_and_the_plot(run_cli: CliRunner, stored: psycopg.Connection[Any], tmp_path: Path) -> None:
    only = run_cli(REPORT, "--json", "--source", "filing", "--start", DAYS[61].isoformat(), "--end", DAYS[95].isoformat())
    assert only.code == 0, only.stderr
    (study,) = json.loads(only.stdout)["sources"]
    assert study["source"] == "filing" and study["events"] == 2  # the events of sessions 70 and 90
    table = run_cli(REPORT, "--plot", str(tmp_path / "caar.png"))
    assert table.code == 0, table.stderr
    assert "| news | 3 |" in table.stdout and "| filing | 3 |" in table.stdout
    head = (tmp_path / "caar.png").read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24])[0] >= 1000  # wide enough to read
    bad = run_cli(REPORT, "--start", "2025-06-01", "--end", "2025-01-01")
    assert bad.code == 2 and "after" in bad.stderr


def test_a_plot_that_cannot_be_written_is_refused_before_the_report(run_cli: CliRunner, stored: psycopg.Connection[Any],
                                                                     tmp_path: Path) -> None:
    target = tmp_path / "kept.txt"
    target.write_text("not to be overwritten", encoding="utf-8")
    (tmp_path / "link.png").symlink_to(target)
    for path, why in ((tmp_path / "nonexistent" / "x.png", "no such folder"), (tmp_path / "link.png", "symbolic link")):
        refused = run_cli(REPORT, "--plot", str(path))
        assert refused.code == 2 and why in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert refused.stdout == ""  # said before the report, not after it
    assert target.read_text(encoding="utf-8") == "not to be overwritten"


@pytest.mark.empty_database
def test_an_empty_report_still_draws_its_plot_quietly(run_cli: CliRunner, dsn: str, tmp_path: Path) -> None:
    empty = run_cli(REPORT, "--plot", str(tmp_path / "empty.png"))
    assert empty.code == 0 and "No valued events" in empty.stdout
    assert (tmp_path / "empty.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Warning" not in empty.stderr and "legend" not in empty.stderr, empty.stderr


def test_a_source_or_range_without_valued_events_is_said_with_the_sources_there_are(run_cli: CliRunner,
                                                                                    stored: psycopg.Connection[Any]) -> None:
    unknown = run_cli(REPORT, "--json", "--source", "newz")
    assert unknown.code == 0 and json.loads(unknown.stdout)["sources"] == []  # the JSON stays a report
    assert unknown.stderr.strip() == "No valued events of source newz; the sources with valued events: filing (3), news (3)."
    later = run_cli(REPORT, "--start", "2099-01-01")
    assert later.code == 0
    assert later.stdout.strip() == "No valued events in that range; the sources with valued events: filing (3), news (3)."


def test_on_a_terminal_the_table_fits_its_width_with_every_value(stored: psycopg.Connection[Any]) -> None:
    import io

    from rich.console import Console

    from tasks.events.report import TABLE_HEADER, format_table, run_study, terminal_table

    studies = run_study(stored)
    markdown = format_table(studies)
    assert max(len(line) for line in markdown) > 100  # what a terminal of 100 columns could not show
    out = io.StringIO()
    Console(file=out, width=100, force_terminal=False).print(terminal_table(studies))
    shown = out.getvalue()
    assert max(len(line) for line in shown.splitlines()) <= 100, shown
    for row in markdown[2:]:  # every value of the markdown table is on screen (folded, not cut)
        for value in row.strip("| ").split(" | ")[:-1]:
            assert value in shown, (value, shown)
    assert all(name in shown for name in TABLE_HEADER[1:])  # a row per figure, a column per source
