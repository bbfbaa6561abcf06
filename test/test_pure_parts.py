"""Pure parts that end-to-end tests only reached through a CLI: the layering of tasks/, flags,
plan decisions, error classification, stage parsing, cap weights and metrics on a scripted group."""

from __future__ import annotations

import ast
import datetime as dt
import math
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from tasks.core.errors import BadInput, NoData, RateLimited, SourceError, TransientSourceError

ROOT = Path(__file__).resolve().parent.parent
# What each package of tasks/ may import (besides itself): lower packages never import higher ones (the same
# layers as the import-linter contract in pyproject.toml, which CI runs; this also reads each package's own word).
ALLOWED = {
    "core": set(),
    "sources": {"core"},
    "prices": {"core", "sources"},
    "events": {"core", "sources", "prices"},
    "pipeline": {"core", "sources", "prices", "jsonl"},
    "jsonl": {"core"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_tasks_packages_import_only_downwards_and_never_prefect_or_flows() -> None:
    packages = sorted(p.name for p in (ROOT / "tasks").iterdir() if (p / "__init__.py").exists())
    assert packages == sorted(ALLOWED)
    for package in packages:
        doc = ast.get_docstring(ast.parse((ROOT / "tasks" / package / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "import" in doc.lower(), f"tasks/{package}/__init__.py must say what it may import"
        for path in (ROOT / "tasks" / package).glob("*.py"):
            for module in imported_modules(path):
                top = module.split(".")[0]
                assert top not in ("prefect", "flows"), f"{path} imports {module}"
                if top == "tasks":
                    used = module.split(".")[1]
                    assert used == package or used in ALLOWED[package], f"{path} imports {module}"


def test_flows_hold_no_sql() -> None:
    sql = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)\b")
    for path in (ROOT / "flows").rglob("*.py"):  # the orchestration package too
        assert not sql.search(path.read_text(encoding="utf-8")), f"SQL text in {path}"


@pytest.mark.parametrize("module", ["flows.etf_backfill", "flows.staggered_sector_backfill", "flows.event_valuation",
                                    "flows.jsonl_ingest", "flows.daily_pipeline", "flows.backfill_status"])
def test_no_flag_accepts_an_abbreviation(module: str) -> None:
    import importlib

    parser = importlib.import_module(module).build_parser()
    long_flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--") and len(o) > 6]
    assert long_flags
    for flag in long_flags:
        with pytest.raises(BadInput):
            parser.parse_args([flag[:-2], "1"])  # a prefix of a real flag is no flag


@pytest.mark.parametrize("module, flag, value", [
    ("flows.etf_backfill", "--timeout", "99999999999999999999"), ("flows.etf_backfill", "--timeout", "0"),
    ("flows.etf_backfill", "--retry-wait", "1e20"), ("flows.etf_backfill", "--delay", "1e20"),
    ("flows.etf_backfill", "--rate-limit-sleep", "99999999999999999999"), ("flows.etf_backfill", "--delay", "nan"),
    ("flows.staggered_sector_backfill", "--delay-minutes", "1e20"), ("flows.staggered_sector_backfill", "--delay", "1e20"),
    ("flows.event_valuation", "--timeout", "inf"),
    ("flows.daily_pipeline", "--rate-limit-sleep", "1e9"), ("flows.jsonl_ingest", "--poll", "1e20"),
    ("flows.jsonl_ingest", "--split-mb", "1e300"),
])
def test_a_number_past_its_range_is_refused_at_parse_time_naming_the_range(module: str, flag: str, value: str) -> None:
    import importlib

    parser = importlib.import_module(module).build_parser()
    with pytest.raises(BadInput, match=rf"^argument {flag}: must be (from|greater than) [\d.]+ to [\d.e+]+ \w+: '{re.escape(value)}'$"):
        parser.parse_args([flag, value])
    for p in getattr(importlib.import_module(module), "PARAMS", []):  # a deployment run's parameter is checked the same way
        if p.option == flag and p.flow:
            from flows.params import check_values

            with pytest.raises(BadInput, match=f"parameter {p.name}: must be"):
                check_values([p], {p.name: float(value)})


def test_every_bat_file_sets_up_through_one_script_and_runs_a_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    bats = sorted(ROOT.glob("[0-9]_*.bat"))
    assert len(bats) == 5
    for bat in [*bats, ROOT / "_setup.bat"]:
        raw = bat.read_bytes()
        assert raw.count(b"\r\n") == raw.count(b"\n"), f"{bat.name}: cmd.exe wants CRLF line ends"
    for bat in bats:
        text = bat.read_text(encoding="utf-8")
        assert 'call "%~dp0_setup.bat"' in text and "pip install" not in text, bat.name
        ran = re.search(r'^uv run --project "%~dp0\." ([\w-]+)', text, re.M)
        assert ran and ran.group(1) in scripts, bat.name


def test_parse_stages_takes_names_numbers_and_all_in_pipeline_order() -> None:
    from tasks.pipeline.options import STAGES, parse_stages

    assert parse_stages("5, trending") == ("trending", "allocation")
    assert parse_stages("ALL") == STAGES and "retention" not in STAGES
    assert parse_stages("4,4,stock-history") == ("stock-history",)
    assert parse_stages("retention,1") == ("etf-ohlc", "retention") == parse_stages("6,etf-ohlc")
    for bad in ("7", "0", "trend", ",", ""):
        with pytest.raises(BadInput):
            parse_stages(bad)


def test_the_sponsor_file_gives_every_stock_with_its_shares_and_yahoo_spelling_and_drops_cash_and_futures() -> None:
    from tasks.sources.ssga import MalformedHoldingsFile, parse_holdings_file
    from test.fake_yahoo import constituents_for, holdings_file

    stocks = constituents_for("XLF")
    got = parse_holdings_file(holdings_file("XLF", dt.date(2025, 6, 27)), "XLF")
    assert got.as_of == dt.date(2025, 6, 27) and got.skipped == 3  # money market, cash, futures
    expected = sorted(((s.replace(".", "-"), s, n, w / 100, float(h)) for s, n, w, h in stocks), key=lambda r: -r[3])
    assert [tuple(r) for r in got.holdings.itertuples(index=False)] == expected
    assert "BRK-B" in set(got.holdings["holding"]) and "BRK.B" in set(got.holdings["sponsor_symbol"])
    with pytest.raises(MalformedHoldingsFile, match="for XLF, not XLK"):
        parse_holdings_file(holdings_file("XLF", dt.date(2025, 6, 27)), "XLK")
    for garbage in (b"", b"<html>Access denied</html>", b"PK\x03\x04broken zip"):
        with pytest.raises(MalformedHoldingsFile):
            parse_holdings_file(garbage, "XLF")
    with pytest.raises(MalformedHoldingsFile, match="no stock"):
        parse_holdings_file(holdings_file("XLF", dt.date(2025, 6, 27), stocks=[]), "XLF")


def test_cap_weights_are_proportional_and_sum_to_one() -> None:
    from tasks.pipeline.allocation import cap_weights

    weights = cap_weights({"A": 3e12, "B": 1e12, "C": 0.5e12})
    assert weights == pytest.approx({"A": 3 / 4.5, "B": 1 / 4.5, "C": 0.5 / 4.5})
    assert math.isclose(sum(weights.values()), 1.0)
    assert cap_weights({}) == {} and cap_weights({"A": 0.0}) == {}


def test_plan_skips_stored_reads_fresh_cache_and_fetches_only_what_is_missing(db: psycopg.Connection[Any], tmp_path: Path) -> None:
    from tasks.core.types import FetchRequest, FetchResult
    from tasks.prices.backfill import plan_backfill
    from tasks.prices.store import ETF_TABLE, store_bars
    from tasks.sources.cache import DownloadCache
    from test.nyse_days import trading_days

    sessions = trading_days(dt.date(2024, 3, 4), dt.date(2024, 3, 8))  # long ago: no recent session to re-check
    bars = pd.DataFrame({"ticker": "AAA", "trade_date": sessions, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
                         "adj_close": 1.4, "volume": 100})
    store_bars(db, ETF_TABLE, bars)  # AAA: every session stored
    store_bars(db, ETF_TABLE, bars.assign(ticker="BBB").iloc[:3])  # BBB: the last two are missing
    cache = DownloadCache(tmp_path / "cache")
    cached = FetchRequest("CCC", sessions[0], sessions[-1])
    cache.put(FetchResult(cached, bars.assign(ticker="CCC"), pd.DataFrame(columns=["ticker", "ex_date", "kind", "value"])))
    plan = plan_backfill(db, ETF_TABLE, ["AAA", "BBB", "CCC", "DDD"], sessions, cache=cache)
    got = {i.ticker: (i.action, i.request) for i in plan.items}
    assert got == {"AAA": ("skip", None), "BBB": ("fetch", FetchRequest("BBB", sessions[3], sessions[4])),
                   "CCC": ("cache", cached), "DDD": ("fetch", FetchRequest("DDD", sessions[0], sessions[-1]))}
    refreshed = plan_backfill(db, ETF_TABLE, ["CCC"], sessions, cache=None)  # --refresh: the cache is not read
    assert [i.action for i in refreshed.items] == ["fetch"]


class _Session:
    """The two things the classifier asks of the source's HTTP session."""

    def __init__(self, status: int | None) -> None:
        self.tripped: RateLimited | None = None
        self.status = status

    def last_status(self, symbol: str) -> int | None:
        return self.status


@pytest.mark.parametrize(("status", "exc", "kind", "reason"), [
    (503, RuntimeError("boom"), TransientSourceError, "HTTP 503"),
    (404, None, NoData, "unknown or delisted"),
    (None, TimeoutError(), TransientSourceError, "network error"),
    (200, ValueError("Expecting value"), TransientSourceError, "malformed"),
    (None, None, NoData, "no data"),
    (400, None, SourceError, "HTTP 400"),
])
def test_source_errors_are_classified_by_what_the_source_did(status: int | None, exc: BaseException | None, kind: type,
                                                            reason: str) -> None:
    from tasks.sources.yahoo import YahooSource

    source = YahooSource.__new__(YahooSource)  # the classifier only needs the session
    source.session = _Session(status)  # type: ignore[assignment]
    error = source._classify("AAA", exc)
    assert type(error) is kind and reason in error.reason and error.symbol == "AAA"


def test_a_tripped_session_is_a_rate_limit_with_its_resume_time() -> None:
    from tasks.sources.yahoo import YahooSource

    source = YahooSource.__new__(YahooSource)
    source.session = _Session(429)  # type: ignore[assignment]
    source.session.tripped = RateLimited("XLK", "rate limited (HTTP 429)", retry_after=120.0)
    error = source._classify("AAA", RuntimeError("anything"))
    assert isinstance(error, RateLimited) and error.retry_after == 120.0


def test_metrics_of_a_scripted_group_match_a_hand_computation() -> None:
    from tasks.events.metrics import value_events
    from test.nyse_days import trading_days

    days = trading_days(dt.date(2025, 1, 2), dt.date(2025, 4, 30))
    n = len(days)
    adj = np.array([100 * 1.01 ** i for i in range(n)])  # +1% a session: momentum and returns are known
    volume = np.array([1000 + 10 * i for i in range(n)], dtype=float)
    bars = pd.DataFrame({"ticker": "AAA", "trade_date": days, "close": adj * 1.1, "adj_close": adj, "volume": volume})
    spy = pd.Series([400 * 1.002 ** i for i in range(n)], index=days)
    base = 25  # the event comes after that session's 16:00 close in New York, before the next session
    when = pd.Timestamp(dt.datetime.combine(days[base], dt.time(17, 30)), tz="America/New_York").tz_convert("UTC")
    events = pd.DataFrame({"ticker": ["AAA", "ZZZ"], "event_time": [when, when]})
    out = value_events(events, bars, spy)
    row = out.iloc[0]
    assert row["base_date"] == days[base] and row["price_at_event"] == pytest.approx(adj[base] * 1.1)
    for k in (1, 5, 20):
        assert row[f"ret_{k}d"] == pytest.approx(1.01 ** k - 1)
        assert row[f"excess_ret_{k}d"] == pytest.approx((1.01 ** k - 1) - (1.002 ** k - 1))
    assert row["momentum_20d"] == pytest.approx(1.01 ** 20 - 1)
    assert row["volatility_20d"] == pytest.approx(0.0, abs=1e-9)  # constant log returns: no dispersion
    assert row["volume_ratio"] == pytest.approx(volume[base + 1] / volume[base - 19: base + 1].mean())
    assert row["trend"] == "up"  # +22% over 20 sessions, beyond +-5%
    unknown = out.iloc[1]
    assert unknown["base_date"] is None or pd.isna(unknown["base_date"])


def test_a_stop_signal_while_a_command_starts_ends_it_with_exit_130_before_anything_runs(tmp_path: Path) -> None:
    """A console script's start (flows/launch.py): a real SIGTERM delivered while the command's
    module loads is remembered, and the command ends with 130 before its body runs; without one the
    body runs. Importing the flows, as a Prefect worker's flow-run process does, handles no signal."""
    (tmp_path / "stopped_while_loading.py").write_text(
        "import os, signal\nfrom flows.cli import run_as_command\nos.kill(os.getpid(), signal.SIGTERM)\n"
        "def main():\n    return run_as_command(lambda: print('the body ran') or 0)\n", encoding="utf-8")
    (tmp_path / "calm.py").write_text("from flows.cli import run_as_command\n"
                                      "def main():\n    return run_as_command(lambda: print('the body ran') or 0)\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    launch = "import sys; from flows.launch import launch; sys.exit(launch({!r}))"
    stopped = subprocess.run([sys.executable, "-c", launch.format("stopped_while_loading")], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
    assert stopped.returncode == 130 and "the body ran" not in stopped.stdout, stopped
    assert stopped.stderr == "interrupted before the run started; nothing was done\n", stopped
    calm = subprocess.run([sys.executable, "-c", launch.format("calm")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert calm.returncode == 0 and calm.stdout == "the body ran\n", calm
    imported = subprocess.run([sys.executable, "-c", "import signal, sys; sys.argv = ['-m']; import flows.deployments;"
                               " print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,"
                               " signal.getsignal(signal.SIGINT) == signal.default_int_handler)"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert imported.stdout.split() == ["True", "True"], imported


@pytest.mark.parametrize(("line", "prog", "args"), [
    ("backfill --tickers AAPL --days 5", "backfill", ("--tickers", "AAPL", "--days", "5")),
    ("uv run --project '/home/me/market backfill' backfill --resume --end 2025-07-08",
     "uv run --project '/home/me/market backfill' backfill", ("--resume", "--end", "2025-07-08")),
    ('uv run --project "C:\\Users\\me\\market backfill" python -m flows.backfill --universe "my list.txt"',
     'uv run --project "C:\\Users\\me\\market backfill" python -m flows.backfill', ("--universe", "my list.txt")),
    ("uv run backfill", "uv run backfill", ()),
])
def test_a_recorded_command_reads_back_as_its_program_and_arguments(line: str, prog: str, args: tuple[str, ...]) -> None:
    from tasks.core.commands import Invocation

    assert Invocation.of_line(line, ("backfill", "flows.backfill")) == Invocation(args, prog)


def test_a_runs_hint_repeats_the_command_typed_or_spells_a_deployment_runs_values_as_flags() -> None:
    from flows.etf_backfill import PARAMS
    from flows.params import defaults, invocation

    typed = invocation(PARAMS, {**defaults(PARAMS), "args": ["--days", "5"], "prog": "uv run etf-backfill"})
    assert typed.command == "uv run etf-backfill --days 5"
    deployed = invocation(PARAMS, {**defaults(PARAMS), "tickers": ["XLK", "XLV"], "days": 60})
    assert deployed.command == "etf-backfill --tickers XLK,XLV --days 60"
    # runs that deployments made before args and prog carry the whole line, or the bare name
    assert invocation(PARAMS, {**defaults(PARAMS), "command": "etf-backfill --days 7"}).command == "etf-backfill --days 7"
    assert invocation(PARAMS, {**defaults(PARAMS), "command": "etf-backfill", "days": 9}).command == "etf-backfill --days 9"


@pytest.mark.parametrize("line", ["etf-backfill --days 5", "backfill --tickers 'AAPL"])
def test_a_recorded_command_of_another_program_or_unclosed_quotes_is_bad_input(line: str) -> None:
    from tasks.core.commands import Invocation

    with pytest.raises(BadInput):
        Invocation.of_line(line, ("backfill", "flows.backfill"))


def test_every_run_is_judged_one_way_stopped_failed_or_done() -> None:
    """``ended``: a rate limit ends the run with where and how it resumes (said once, with what is
    kept), the resume command asked for only then; otherwise failed or done, the totals kept."""
    from tasks.core.commands import ended
    from tasks.core.errors import Outcome

    said: list[str] = []
    asked: list[str] = []

    def resume() -> str:
        asked.append("asked")
        return "backfill --tickers MSFT"

    totals = object()
    assert ended(totals, failed=False, say=said.append, resume=resume) == (done := ended(totals, failed=False, say=said.append))
    assert (done.code, done.detail, done.resume) == (Outcome.DONE, totals, None)
    assert ended(totals, failed=True, say=said.append, resume=resume).code == Outcome.SOME_FAILED
    assert said == [] and asked == []
    before = dt.datetime.now(dt.UTC)
    stop = ended(totals, failed=True, say=said.append, stopped=RateLimited("MSFT", retry_after=30.0), sleep_s=120.0, resume=resume,
                 kept="\n(kept)")
    assert (stop.code, stop.detail, asked) == (Outcome.RATE_LIMITED, totals, ["asked"])
    assert stop.resume is not None and stop.resume.command == "backfill --tickers MSFT"
    assert before + dt.timedelta(seconds=120) <= stop.resume.at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=121)  # the longer wait
    (line,) = said
    assert line.startswith("Rate limited: rate limited (HTTP 429) (MSFT).") and line.endswith("  backfill --tickers MSFT\n(kept)")


def test_every_broken_field_of_a_record_is_a_reject_never_another_exception() -> None:
    """Each field of a tick, a swing bar and a gap, broken in each way (or missing): a row or a Reject,
    never an exception that would fail the whole file (NaN in mitigation_level once did)."""
    from tasks.jsonl.records import ROW_BUILDERS, Reject
    from test.jsonl_tree import START, swing, tick

    odd_values: list[object] = [None, True, False, -1, 0, 1, 1.0, 1.5, float("nan"), float("inf"), -float("inf"), 1e11, 1e400,
                                99999999999.99995, 10**14, 10**30, "1", "", "x" * 60, "a\x00b", "2026-01-22T09:31:05.120Z",
                                "2026-01-22T09:31:05.120+09:00", "2026-01-22 09:31:05+00:00", "2026-02-30T09:31:05Z",
                                "2026-01-22T09:31:05+16:00", "2026-01-22T09:31:05", [], {}, {"open": "x"}]
    gap = {"timestamp": "2026-01-22T00:31:00.000Z", "gap_start_ts": "2026-01-22T00:31:00.000Z", "gap_end_ts": "2026-01-22T00:31:05.000Z",
           "gap_seconds": 5, "scope": "scalp", "reason": "ws_disconnect", "session_id": "track_b_session"}
    tried = 0
    for kind, good in (("scalp", tick("005930", START, 3)), ("swing", swing("005930", START, 1)), ("gap", gap)):
        build = ROW_BUILDERS[kind]
        assert build(good)  # the good record is a row
        broken = [good | {field: value} for field in good for value in odd_values]
        broken += [{k: v for k, v in good.items() if k != field} for field in good]
        for rec in broken:
            tried += 1
            try:
                build(rec)
            except Reject:
                pass
    assert tried > 600


def test_the_fast_tick_path_gives_the_row_path_s_row_and_key_or_leaves_the_line_to_it() -> None:
    """A line the C-checked fast path accepts must give exactly the row (and the identity) the
    Python row path gives; everything else it must leave to that path (None), never accept."""
    import json

    import msgspec

    from tasks.jsonl.records import Reject, scalp_row
    from tasks.jsonl.ticks import fast_scalp_row, keyed_copy_lines
    from test.jsonl_tree import START, tick

    good = tick("005930", START, 3) | {"last_price": 70000.12345, "bid_price": 0.00005, "ask_price": 1.00005}
    odd_values: list[object] = [None, True, -1, 0, 1.0, 1.5, 2.0000000001, float("nan"), float("inf"), 1e11, 99999999999.99995,
                                98765432109.87654, 10**14, 10**30, "1", "", "x" * 21, "a\x00b", "tab\there", "back\\slash", "é" * 20,
                                "2026-01-22T09:31:05.120+09:00", "2026-01-22 09:31:05+00:00", "2026-02-30T09:31:05Z",
                                "2026-01-22T09:31:05+16:00", "2026-01-22T09:31:05.1234567Z", "2026-01-22T09:31:05", [], {}]
    records = [good | {field: value} for field in good for value in odd_values]
    records += [{k: v for k, v in good.items() if k != field} for field in good] + [good | {"extra": {"nested": [1, 2]}}]
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in records]  # NaN and Infinity: not JSON, both paths refuse
    body = json.dumps(good)[1:-1]
    lines += [f"{{{body}, \"bid_price\": 3}}".encode(), f" {{{body}}} ".encode(), f"{{{body}}}{{}}".encode(),
              json.dumps(good).replace('"bid_size": 102', '"bid_size": 1.02e2').encode(), b"[1, 2]", b"", b"{}"]
    accepted = 0
    for n, line in enumerate(lines, 1):
        fast = fast_scalp_row(line)
        try:
            slow: tuple[object, ...] | None = scalp_row(msgspec.json.decode(line))
        except (Reject, msgspec.DecodeError, AttributeError, TypeError):
            slow = None
        if fast is None:
            continue
        accepted += 1
        assert slow is not None and fast == slow, line
        (fast_key, fast_copy), (slow_key, _) = keyed_copy_lines([(*fast, n), (*slow, n)], "scalp/x.jsonl")
        assert fast_key == slow_key, line
        assert fast_copy.split("\t")[0] == fast[0].replace("\\", "\\\\").replace("\t", "\\t")  # COPY text escaping
    assert accepted >= 40  # the fast path does take the common lines
    assert fast_scalp_row(json.dumps(good).encode()) is not None


@pytest.mark.parametrize("read_size", [7, 100, 8 << 20])
def test_pieces_of_a_file_start_after_a_newline_and_count_their_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       read_size: int) -> None:
    import random

    from tasks.jsonl import files

    monkeypatch.setattr(files, "_SPLIT_READ", read_size)  # cuts found across read boundaries too
    rng = random.Random(7)
    data = b"".join(b"x" * rng.randint(0, 300) + b"\n" for _ in range(400)) + b"tail without newline"
    path = tmp_path / "f.jsonl"
    path.write_bytes(data)
    last_newline = data.rfind(b"\n") + 1
    for start in (0, data.index(b"\n", 5000) + 1):
        for parts, min_bytes in ((4, 1000), (3, 20_000), (8, 100), (4, 10**9)):
            pieces, end, end_lines = files.split_points(path, start, data[:start].count(b"\n"), parts, min_bytes)
            assert (end, end_lines) == (last_newline, data.count(b"\n"))
            assert pieces[0].start == start and pieces[-1].end == end and pieces[0].first and not any(p.first for p in pieces[1:])
            assert all(a.end == b.start for a, b in zip(pieces, pieces[1:], strict=False))
            assert all(data[p.start - 1:p.start] == b"\n" for p in pieces if p.start)
            assert all(p.lines_before == data[:p.start].count(b"\n") and p.last_line == data[:p.end].count(b"\n") for p in pieces)
            assert len(pieces) <= parts and (len(pieces) == 1 or all(p.end - p.start >= min_bytes // 2 for p in pieces))
            if min_bytes == 10**9:
                assert len(pieces) == 1
            if (parts, min_bytes) == (4, 1000):
                assert len(pieces) == 4
