"""Unit tests of the plain task code: calendar, tickers, limiter, Retry-After, cache, normalize, store."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest

from tasks.core.calendar import last_closed_session, sessions_back
from tasks.core.db import describe_dsn, migrate, scrub
from tasks.core.errors import BadInput
from tasks.core.sql_files import migrations
from tasks.core.tickers import parse_ticker_list, validate_ticker
from tasks.core.types import FetchRequest, FetchResult
from tasks.prices.store import store_bars
from tasks.sources.cache import DownloadCache
from tasks.sources.normalize import normalize_history
from tasks.sources.spacing import MinIntervalGate
from tasks.sources.yahoo import parse_retry_after

UTC = dt.UTC


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_last_closed_session_respects_close_and_early_close() -> None:
    # 2025-07-03 closed early at 13:00 New York (17:00 UTC).
    assert last_closed_session(dt.datetime(2025, 7, 3, 16, 59, tzinfo=UTC)) == dt.date(2025, 7, 2)
    assert last_closed_session(dt.datetime(2025, 7, 3, 17, 0, tzinfo=UTC)) == dt.date(2025, 7, 3)
    # Saturday after the holiday Friday: the last closed session is Thursday.
    assert last_closed_session(dt.datetime(2025, 7, 5, 12, 0, tzinfo=UTC)) == dt.date(2025, 7, 3)


def test_sessions_back_skips_weekends_and_holidays() -> None:
    days = sessions_back(4, dt.date(2025, 1, 2), now=dt.datetime(2025, 2, 1, tzinfo=UTC))
    # 2024-12-25 and 2025-01-01 are holidays; 12-28/29 a weekend.
    assert days == [dt.date(2024, 12, 27), dt.date(2024, 12, 30), dt.date(2024, 12, 31), dt.date(2025, 1, 2)]


def test_sessions_back_clamps_future_end_to_last_closed_session() -> None:
    now = dt.datetime(2025, 7, 8, 12, 0, tzinfo=UTC)  # before the 7th's successor closes
    assert sessions_back(1, dt.date(2030, 1, 1), now=now) == [dt.date(2025, 7, 7)]


@pytest.mark.parametrize("days", [0, -1, 10_001])
def test_sessions_back_rejects_absurd_days(days: int) -> None:
    with pytest.raises(BadInput):
        sessions_back(days)


@pytest.mark.parametrize("raw", ["", "DROP TABLE", "x;--", "A" * 16, "XL K", "ÄPFEL", ".", "..", "^", "-=-"])
def test_validate_ticker_rejects_bad_symbols(raw: str) -> None:
    with pytest.raises(BadInput):
        validate_ticker(raw)


def test_parse_ticker_list_normalizes_dedupes_and_keeps_order() -> None:
    assert parse_ticker_list(" xlk, XLV ,xlk,^GSPC,BRK-B,") == ["XLK", "XLV", "^GSPC", "BRK-B"]


def test_rate_limiter_spaces_acquisitions_with_injected_clock() -> None:
    clock = FakeClock()
    limiter = MinIntervalGate(2.0, clock=clock.time, sleep=clock.sleep)
    assert limiter.acquire() == 0.0
    clock.now += 0.5
    assert limiter.acquire() == pytest.approx(1.5)
    clock.now += 5
    assert limiter.acquire() == 0.0
    assert clock.sleeps == [pytest.approx(1.5)]


def test_parse_retry_after_accepts_seconds_and_http_dates() -> None:
    assert parse_retry_after("120") == 120.0
    now = dt.datetime(2025, 1, 1, 12, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("Wed, 01 Jan 2025 12:05:00 GMT", now=now) == pytest.approx(300.0)
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def _bars(symbol: str, days: list[dt.date], bump: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"ticker": symbol, "trade_date": days, "open": [10.0 + bump] * len(days), "high": [11.0] * len(days), "low": [9.0] * len(days),
         "close": [10.5 + bump] * len(days), "adj_close": [10.4] * len(days), "volume": [100] * len(days)}
    )


def test_cache_round_trips_and_serves_sub_ranges(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000)
    cache = DownloadCache(tmp_path, clock=clock.time)
    days = [dt.date(2025, 7, 1), dt.date(2025, 7, 2), dt.date(2025, 7, 3)]
    req = FetchRequest("XLK", days[0], days[-1])
    cache.put(FetchResult(req, _bars("XLK", days), from_cache=False))
    got = cache.get(FetchRequest("XLK", days[1], days[2]))
    assert got is not None and got.from_cache
    assert list(got.bars["trade_date"]) == days[1:]
    assert got.bars["close"].tolist() == [10.5, 10.5]
    assert cache.get(FetchRequest("XLK", dt.date(2025, 6, 30), days[-1])) is None  # not covered
    assert cache.get(FetchRequest("XLV", days[0], days[-1])) is None


def test_cache_keeps_one_file_per_covering_fetch_in_its_symbols_folder(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path)
    days = [dt.date(2025, 7, d) for d in range(1, 5)]
    narrow = cache.put(FetchResult(FetchRequest("XLK", days[1], days[2]), _bars("XLK", days[1:3]), from_cache=False))
    other = cache.put(FetchResult(FetchRequest("XLK", days[2], days[3]), _bars("XLK", days[2:]), from_cache=False))
    assert narrow is not None and other is not None and narrow.parent == other.parent != tmp_path / "prices"
    assert cache.get(FetchRequest("XLK", days[0], days[2])) is None  # no file covers it
    wide = cache.put(FetchResult(FetchRequest("XLK", days[0], days[2]), _bars("XLK", days[:3]), from_cache=False))
    assert wide is not None and not narrow.exists() and other.exists()  # the wider fetch answers all the narrow one did
    got = cache.get(FetchRequest("XLK", days[1], days[2]))
    assert got is not None and list(got.bars["trade_date"]) == days[1:3]
    # 40 symbols' files spread over many folders, none of them the top one
    for i in range(40):
        cache.put(FetchResult(FetchRequest(f"S{i}", days[0], days[0]), _bars(f"S{i}", days[:1]), from_cache=False))
    folders = {p.parent for p in (tmp_path / "prices").rglob("*.json")}
    assert len(folders) > 20 and tmp_path / "prices" not in folders


@pytest.mark.parametrize("symbol", ["XLK", "ODD__NAME"])
def test_cache_files_of_the_single_folder_layout_are_moved_and_still_served(tmp_path: Path, symbol: str) -> None:
    days = [dt.date(2025, 7, 1), dt.date(2025, 7, 2)]
    written = DownloadCache(tmp_path).put(FetchResult(FetchRequest(symbol, *days), _bars(symbol, days), from_cache=False))
    assert written is not None
    flat = tmp_path / "prices" / written.name  # where the previous layout kept it
    written.rename(flat)
    got = DownloadCache(tmp_path).get(FetchRequest(symbol, *days))
    assert got is not None and list(got.bars["trade_date"]) == days
    assert not flat.exists() and written.exists()


def test_cache_expires_after_ttl(tmp_path: Path) -> None:
    clock = FakeClock(1_700_000_000)
    cache = DownloadCache(tmp_path, clock=clock.time)
    req = FetchRequest("SPY", dt.date(2025, 7, 1), dt.date(2025, 7, 1))
    cache.put(FetchResult(req, _bars("SPY", [dt.date(2025, 7, 1)]), from_cache=False))
    clock.now += 24 * 3600 - 1
    assert cache.get(req) is not None
    clock.now += 2
    assert cache.get(req) is None


@pytest.mark.parametrize("content", [b"", b"{", b"\x80\x04\x95\x00pickle", b'{"version": 2, "start": "x"}', b"[1, 2]",
                                     b'{"version": 2, "start": "2025-07-01", "end": "2025-07-01", "fetched_at": 1, '
                                     b'"bars": {"ticker": [1]}, "actions": {}}'])
def test_cache_deletes_unreadable_files_and_misses(tmp_path: Path, content: bytes) -> None:
    cache = DownloadCache(tmp_path)
    req = FetchRequest("SPY", dt.date(2025, 7, 1), dt.date(2025, 7, 1))
    cache.put(FetchResult(req, _bars("SPY", [dt.date(2025, 7, 1)]), from_cache=False))
    (path,) = (tmp_path / "prices").glob("*/SPY__*.json")
    path.write_bytes(content)
    assert cache.get(req) is None
    assert not path.exists()


@pytest.mark.parametrize("change", [
    {"bars.close": ["abc"]}, {"bars.trade_date": ["not-a-date"]}, {"fetched_at": "abc"}, {"fetched_at": 4102444800.0},
    {"bars.volume": [1.5e30]}, {"bars.close": [-5.0]}, {"bars.close": [1e300]}, {"bars.high": [1.0]},
    {"bars.volume": [-3]}, {"actions.value": ["x"]},
], ids=["close-text", "bad-date", "fetched-text", "fetched-future", "volume-overflow", "negative", "huge", "high-below-low",
        "negative-volume", "action-text"])
def test_a_cache_file_with_bad_values_is_deleted_and_refetched(tmp_path: Path, change: dict[str, Any]) -> None:
    cache = DownloadCache(tmp_path, clock=lambda: 1_800_000_000.0)
    req = FetchRequest("SPY", dt.date(2025, 7, 1), dt.date(2025, 7, 1))
    actions = pd.DataFrame({"ticker": ["SPY"], "ex_date": [dt.date(2025, 7, 1)], "kind": ["dividend"], "value": [1.0]})
    path = cache.put(FetchResult(req, _bars("SPY", [dt.date(2025, 7, 1)]), from_cache=False, actions=actions))
    assert cache.get(req) is not None  # the file as written is good
    data = json.loads(path.read_text())
    for key, value in change.items():
        if "." in key:
            part, column = key.split(".")
            data[part][column] = value
        else:
            data[key] = value
    path.write_text(json.dumps(data))
    assert cache.get(req) is None
    assert not path.exists()


def test_a_fifo_named_like_a_cache_file_is_no_hang(tmp_path: Path) -> None:
    import os
    import threading

    cache = DownloadCache(tmp_path)
    (tmp_path / "prices").mkdir()
    fifo = tmp_path / "prices" / "SPY__2025-07-01__2025-07-01.json"
    os.mkfifo(fifo)
    req = FetchRequest("SPY", dt.date(2025, 7, 1), dt.date(2025, 7, 1))
    answer: list[object] = []
    worker = threading.Thread(target=lambda: answer.append(cache.get(req)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive() and answer == [None]
    assert not fifo.exists()


def test_cache_files_are_json_not_pickle(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path)
    req = FetchRequest("SPY", dt.date(2025, 7, 1), dt.date(2025, 7, 1))
    path = cache.put(FetchResult(req, _bars("SPY", [dt.date(2025, 7, 1)]), from_cache=False))
    bars = json.loads(path.read_text())["bars"]
    assert (bars["ticker"][0], bars["trade_date"][0], bars["close"][0]) == ("SPY", "2025-07-01", 10.5)


def test_normalize_history_maps_columns_drops_empty_rows_and_extracts_actions() -> None:
    index = pd.DatetimeIndex(["2025-07-01 09:30", "2025-07-02 09:30", "2025-07-03 09:30"]).tz_localize("America/New_York")
    frame = pd.DataFrame(
        {"Open": [1.0, None, 3.0], "High": [1.5, None, 3.5], "Low": [0.5, None, 2.5], "Close": [1.2, None, 3.2],
         "Adj Close": [1.1, None, 3.1], "Volume": [10.0, None, 30.0], "Dividends": [0.0, 0.0, 0.25], "Stock Splits": [0.0, 0.0, 0.0]},
        index=index,
    )
    bars, actions = normalize_history("XLK", frame)
    assert list(bars["trade_date"]) == [dt.date(2025, 7, 1), dt.date(2025, 7, 3)]
    assert bars["volume"].tolist() == [10, 30]
    assert actions.to_dict("records") == [{"ticker": "XLK", "ex_date": dt.date(2025, 7, 3), "kind": "dividend", "value": 0.25}]


def test_store_bars_counts_new_updated_unchanged_and_is_idempotent(db: psycopg.Connection[Any]) -> None:
    days = [dt.date(2025, 7, 1), dt.date(2025, 7, 2)]
    first = store_bars(db, "etf_daily_bars", _bars("XLK", days))
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    again = store_bars(db, "etf_daily_bars", _bars("XLK", days))
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    revised = store_bars(db, "etf_daily_bars", pd.concat([_bars("XLK", days[:1], bump=1.0), _bars("XLK", [dt.date(2025, 7, 3)])]))
    assert (revised.new, revised.updated, revised.unchanged) == (1, 1, 0)
    rows = db.execute("SELECT trade_date, close FROM etf_daily_bars ORDER BY trade_date").fetchall()
    assert rows == [(days[0], 11.5), (days[1], 10.5), (dt.date(2025, 7, 3), 10.5)]


def test_store_bars_rejects_whole_batch_on_bad_row(db: psycopg.Connection[Any]) -> None:
    from tasks.core.errors import StoreError

    bad = _bars("XLK", [dt.date(2025, 7, 1), dt.date(2025, 7, 2)])
    bad.loc[1, "close"] = None  # close is NOT NULL
    with pytest.raises(StoreError):
        store_bars(db, "etf_daily_bars", bad)
    assert db.execute("SELECT count(*) FROM etf_daily_bars").fetchone() == (0,)


def test_migrations_apply_once(db: psycopg.Connection[Any]) -> None:
    assert migrate(db) == []
    recorded = [r[0] for r in db.execute("SELECT version FROM backfill_internal.market_backfill_migrations ORDER BY applied_at, version")]
    on_disk = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "sql").iterdir() if re.fullmatch(r"\d{3}_\w+\.sql", p.name))
    assert len(on_disk) >= 6 and recorded == on_disk


@pytest.mark.empty_database
@pytest.mark.parametrize("theirs, rows", [
    ("CREATE TABLE schema_migrations (version varchar PRIMARY KEY)", ["20240101000000", "20240202000000"]),  # Rails
    ("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL DEFAULT false)", ["7"]),  # golang-migrate
    ("CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())", ["001_create_users"]),
])
def test_another_tools_schema_migrations_is_never_written_or_read_as_ours(dsn: str, theirs: str, rows: list[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(theirs)  # type: ignore[arg-type]
        for row in rows:
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (row,))
        before = sorted(conn.execute("SELECT * FROM schema_migrations").fetchall())
        applied = migrate(conn)
        assert applied == [version for version, _ in migrations()] and migrate(conn) == []
        assert sorted(conn.execute("SELECT * FROM schema_migrations").fetchall()) == before
        assert conn.execute("SELECT count(*) FROM backfill_internal.market_backfill_migrations").fetchone() == (len(applied),)


@pytest.mark.empty_database
def test_an_older_checkouts_schema_migrations_is_renamed_to_ours_and_nothing_is_applied_twice(dsn: str) -> None:
    from test.fix_db import migrate_before

    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            migrate_before(conn, "017")  # recorded in schema_migrations, as checkouts before the rename did
        assert migrate(conn) == [version for version, _ in migrations() if version >= "017"]
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM backfill_internal.market_backfill_migrations").fetchone() == (len(migrations()),)


def test_dsn_descriptions_never_show_passwords() -> None:
    dsn = "postgresql://bob:hunter2@db.example:6543/prices"
    assert describe_dsn(dsn) == "db.example:6543/prices"
    assert "hunter2" not in scrub(f"failed for {dsn} password hunter2", dsn)


@pytest.mark.parametrize("dsn, secrets, kept", [
    # an unencoded / or @ in a URI's password used to spill into the host or database described
    ("postgresql://u:S3CR/ETPW@127.0.0.1:1/db", ["S3CR", "ETPW"], "127.0.0.1:1/db"),
    ("postgresql://u:S3@CRET@127.0.0.1:1/db", ["S3@", "CRET"], "127.0.0.1:1/db"),
    # a bare token is not a DSN: libpq would quote it back whole
    ("sometokenABCDEF", ["sometoken", "ABCDEF"], "neither a URI"),
    # the password in the query: the word after it ("port") used to be masked instead
    ("postgresql://127.0.0.1:1/db?password=hunter22&port=x", ["hunter22", "unter"], 'connection option "port"'),
    ("host=127.0.0.1 port=1 password='a b c'", ["a b c"], "failed: connection to server at"),
])
def test_a_connection_error_shows_no_part_of_the_password(dsn: str, secrets: list[str], kept: str) -> None:
    from tasks.core.db import connect
    from tasks.core.errors import StoreError

    with pytest.raises(StoreError) as caught:
        connect(dsn)
    message = str(caught.value)
    assert message.startswith("cannot connect to PostgreSQL") and kept in message, message
    assert not [s for s in secrets if s in message], message


def test_the_docs_command_for_a_psql_dsn_prints_one_that_connects(pg_server: tuple[str, Path | None]) -> None:
    import os
    import subprocess
    import sys

    from test.fix_yahoo import ROOT

    if pg_server[1] is None:
        pytest.skip("the tests use TEST_DATABASE_URL, not the embedded server")
    page = (ROOT / "docs" / "etf-backfill.md").read_text(encoding="utf-8")
    (code,) = re.findall(r'With the embedded server: `uv run python -c "([^"]+)"`', page)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"BACKFILL_PGDATA": str(pg_server[1])}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with psycopg.connect(out.stdout.strip()) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("market_data",)


def test_the_nyse_calendar_has_exactly_the_trading_days_of_the_exchanges_published_holidays() -> None:
    from tasks.core.calendar import sessions_between
    from test.nyse_days import trading_days

    first, last = dt.date(2024, 1, 1), dt.date(2026, 12, 31)
    assert sessions_between(first, last) == trading_days(first, last)  # 2025-01-09 (a day of mourning) included


def test_the_time_to_resume_after_a_rate_limit_is_never_before_the_cool_down_ends() -> None:
    from tasks.core.commands import resume_point
    from tasks.core.errors import RateLimited

    now = dt.datetime(2026, 12, 3, 16, 43, 8, 730_000, tzinfo=dt.UTC)
    cooling = RateLimited("XLK", "budget 'yahoo' cooling down after HTTP 429", retry_after=15.0, from_budget=True)
    points = [resume_point(cooling, 900.0, "staggered-backfill --start-from XLK", now=now),
              resume_point(cooling, 900.0, "x", now=now.replace(microsecond=0))]  # a whole second stays as it is
    # The cool-down ends at 16:43:23.73: the next whole second, not the one before it (a continuation
    # scheduled at 16:43:23 found 0.73 s of cool-down left and stopped again).
    assert [p.at for p in points] == [dt.datetime(2026, 12, 3, 16, 43, 24, tzinfo=dt.UTC),
                                      dt.datetime(2026, 12, 3, 16, 43, 23, tzinfo=dt.UTC)]
    assert points[0].hint() == ("Rate limited: budget 'yahoo' cooling down after HTTP 429 (XLK). Everything fetched so far is "
                                "committed.\nResume after 2026-12-03 16:43:24 UTC (in 15 s) with:\n"
                                "  staggered-backfill --start-from XLK")
    # Our budget refused before any request: the source was not asked, and the hint says so
    refused = RateLimited("XLK", "budget 'yahoo' full", retry_after=42.0, from_budget=True, refused=True)
    point = resume_point(refused, 900.0, "etf-backfill", now=now)
    assert point.refused and point.at == dt.datetime(2026, 12, 3, 16, 43, 51, tzinfo=dt.UTC)
    assert point.hint().startswith("Waiting for the budget's cool-down until 2026-12-03 16:43:51 UTC: budget 'yahoo' full; "
                                   "no request was sent.")
    # A 429 from the source: the longer of its Retry-After and the configured sleep
    limited = RateLimited("XLV", "HTTP 429", retry_after=60.0)
    assert resume_point(limited, 900.0, "c", now=now).at == dt.datetime(2026, 12, 3, 16, 58, 9, tzinfo=dt.UTC)


@pytest.mark.parametrize("text", ["2026-12-02T23:59:59.9999999Z", "2026-12-02T23:59:59.1234565Z", "2026-12-02T23:59:59.1234575Z",
                                  "2026-12-02T23:59:59.12345651+09:00", "2026-12-02T23:59:59.999999499Z", "2026-12-02T23:59:59.5Z"])
def test_a_time_finer_than_microseconds_is_rounded_as_postgresql_rounds_it(db: psycopg.Connection[Any], text: str) -> None:
    from tasks.jsonl.records import EPOCH, parse_time

    checked = parse_time(text)
    assert not isinstance(checked, str)
    sent, micros = checked
    stored = db.execute("SELECT %s::text::timestamptz, %s::text::timestamptz", (text, sent)).fetchone()
    assert stored is not None and stored[0] == stored[1]  # what psql shows for the file's text is what the loader stores
    assert micros == (stored[0] - EPOCH) // dt.timedelta(microseconds=1)  # and the key's time (its day: the partition) agrees


def test_every_table_and_view_says_what_it_holds_in_the_catalog(db: Any) -> None:
    """``\\d+`` (and any SQL client) shows what each relation is: none of ours is without a comment."""
    rows = db.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = ANY(current_schemas(false)) AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition"
        " AND c.relname <> 'market_backfill_migrations' AND obj_description(c.oid, 'pg_class') IS NULL").fetchall()
    assert rows == []


def test_every_console_script_starts_through_the_launcher_and_runs_its_commands_main() -> None:
    """Each console script is an entry of flows/launch.py (a stop while it loads is exit 130), for
    the module of the same command; ``market-backfill`` and ``python -m flows`` list the same."""
    import tomllib

    import flows.launch
    from flows.market_backfill import ALIASES, COMMANDS
    from test.fix_yahoo import ROOT

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    modules = {name: module for name, (module, _) in COMMANDS.items()} | {alias: COMMANDS[name][0] for alias, name in ALIASES.items()}
    for script, target in scripts.items():
        module, entry = target.split(":")
        assert module == "flows.launch", (script, target)
        assert getattr(flows.launch, entry).module == modules.get(script, "flows.market_backfill"), (script, target)
    assert set(scripts) - {"market-backfill"} <= set(modules), scripts
    assert "sys.exit(market_backfill())" in (ROOT / "flows" / "__main__.py").read_text(encoding="utf-8")


def test_no_module_but_the_settings_module_touches_the_process_environment() -> None:
    """``flows/config.py`` names every variable the commands read (``Environment``); nothing else
    reads or sets ``os.environ`` (or ``os.getenv``/``os.putenv``/``os.unsetenv``)."""
    import ast

    from test.fix_yahoo import ROOT

    found = []
    for path in sorted([*(ROOT / "tasks").rglob("*.py"), *(ROOT / "flows").rglob("*.py")]):
        if path == ROOT / "flows" / "config.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            attribute = isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv", "environb")
            imported = isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                a.name.startswith(("environ", "getenv")) for a in node.names)
            if attribute or imported:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_every_variable_the_file_takes_is_a_variable_of_the_environment_model() -> None:
    from flows.config import IN_FILE, Environment

    assert IN_FILE <= set(Environment.model_fields)


def test_the_one_retry_helper_retries_what_it_is_told_at_most_so_often_and_reraises_the_last_error() -> None:
    from tasks.core.retries import retrying

    calls: list[int] = []
    waits: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError(f"attempt {len(calls)}")
        return "ok"

    assert retrying(TimeoutError, attempts=3, initial=0.25, most=1.0, sleep=waits.append)(flaky) == "ok"
    assert len(calls) == 3 and len(waits) == 2 and all(0.25 <= w <= 1.0 for w in waits)
    calls.clear()
    with pytest.raises(TimeoutError, match="attempt 2"):  # the last error itself, not tenacity's RetryError
        retrying(lambda exc: isinstance(exc, TimeoutError), attempts=2, initial=0, most=0, sleep=waits.append)(flaky)
    calls.clear()
    with pytest.raises(TimeoutError, match="attempt 1"):  # not what it was told to retry: raised at once
        retrying(ValueError, attempts=5, initial=0, most=0, sleep=waits.append)(flaky)
    assert len(calls) == 1


def test_planning_and_storing_daily_bars_against_an_in_memory_source(db: Any, tmp_path: Path) -> None:
    """The backfill's logic without HTTP: plan, fetch and store through ``BarSource``; a second
    plan skips what is stored; a refresh stores only the bar that changed and logs the change."""
    import datetime as dt

    from tasks.core.runs import start_run
    from tasks.prices.backfill import plan_backfill
    from tasks.prices.staggered import fetch_and_store
    from tasks.sources.cache import DownloadCache
    from test.memory_source import MemorySource
    from test.nyse_days import trading_days

    sessions = trading_days(dt.date(2025, 7, 1), dt.date(2025, 7, 8))  # 5: the 4th of July is not one
    source = MemorySource({t: [(d, 10.0 + k, 11.0 + k, 9.0 + k, 10.5 + k, 10.4 + k, 1000 * (k + 1)) for k, d in enumerate(sessions)]
                           for t in ("AAA", "BBB")})
    table, cache = "etf_daily_bars", DownloadCache(tmp_path / "cache")
    run_id = start_run(db, "etf-backfill", "etf-backfill", {}, ["AAA", "BBB", "GONE"])

    def store_all(only_missing: bool = True) -> dict[str, Any]:
        plan = plan_backfill(db, table, ["AAA", "BBB", "GONE"], sessions, cache=None if not only_missing else cache,
                             only_missing=only_missing)
        return {item.ticker: fetch_and_store(db, table, item, cache=cache, source=source, run_id=run_id, sessions=set(sessions),
                                             use_cache=only_missing) if item.action != "skip" else "skip" for item in plan.items}

    first = store_all()
    assert [(first[t].status, first[t].counts.new) for t in ("AAA", "BBB")] == [("done", 5), ("done", 5)]
    assert first["GONE"].status in ("failed", "no_data") and [r.symbol for r in source.asked] == ["AAA", "BBB", "GONE"]
    stored = db.execute("SELECT ticker, trade_date, open, high, low, close, adj_close, volume FROM etf_daily_bars"
                        " ORDER BY 1, 2").fetchall()
    assert stored == [(t, *bar) for t in ("AAA", "BBB") for bar in source.bars[t]]
    source.asked.clear()
    again = store_all()
    assert again["AAA"] == again["BBB"] == "skip" and [r.symbol for r in source.asked] == ["GONE"]  # stored: not asked again
    day, *_ = source.bars["AAA"][2]
    source.bars["AAA"][2] = (day, 12.0, 13.5, 11.0, 12.75, 12.6, 3100)  # a revised bar
    refreshed = store_all(only_missing=False)
    assert (refreshed["AAA"].counts.new, refreshed["AAA"].counts.updated) == (0, 1) and refreshed["BBB"].counts.updated == 0
    changes = sorted(db.execute("SELECT ticker, first_date, last_date FROM price_changes").fetchall())
    assert changes == [("AAA", sessions[0], sessions[-1]), ("AAA", day, day), ("BBB", sessions[0], sessions[-1])]  # new bars, then the one


def test_a_stop_that_comes_inside_a_held_block_is_delivered_when_the_block_ends() -> None:
    import os
    import signal
    import time

    from tasks.core.processes import stops_held

    steps: list[str] = []
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # what a command's handler does: KeyboardInterrupt
    try:
        with pytest.raises(KeyboardInterrupt), stops_held():
            os.kill(os.getpid(), signal.SIGINT)  # between a commit and its count
            time.sleep(0.05)  # Python runs a handler between two bytecodes: it has run by now
            steps += ["committed", "counted"]
        assert steps == ["committed", "counted"]  # neither cut off
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the command's handler back
        with stops_held():
            steps.append("no stop, nothing delivered")
    finally:
        signal.signal(signal.SIGINT, before)
