"""The database as users query it: the exchange's sessions, the views they would otherwise write, the
catalog's comments, and a role that reads the data but none of the machinery. Expected values come
from the hand-written calendar (test/nyse_days.py) and arithmetic here, not from the views."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from test.fake_yahoo import FakeYahoo
from test.fix_yahoo import ROOT, CliRunner
from test.nyse_days import EARLY_CLOSES, closed_trading_days, session_hours, trading_days

DAYS = trading_days(dt.date(2025, 6, 2), dt.date(2025, 6, 13))  # ten sessions


def test_the_sessions_table_is_the_exchange_s_calendar_with_its_hours(db: psycopg.Connection[Any]) -> None:
    first, last = dt.date(2024, 1, 1), dt.date(2026, 12, 31)
    rows = db.execute("SELECT session_date, open_at, close_at, early_close FROM nyse_sessions WHERE session_date BETWEEN %s AND %s"
                      " ORDER BY 1", (first, last)).fetchall()
    assert [r[0] for r in rows] == trading_days(first, last)
    for day, opened, closed, early in rows:
        assert (opened, closed) == session_hours(day) and early == (day in EARLY_CLOSES), day
    (ahead,) = db.execute("SELECT max(session_date) FROM nyse_sessions").fetchone() or (None,)
    assert ahead > dt.date.today() + dt.timedelta(days=60)  # kept about two months ahead, at least
    (before,) = db.execute("SELECT count(*) FROM nyse_sessions").fetchone() or (0,)
    from tasks.core.db import migrate

    migrate(db)  # run again: nothing added twice
    assert db.execute("SELECT count(*) FROM nyse_sessions").fetchone() == (before,)


def bar(ticker: str, day: dt.date, k: int) -> tuple[Any, ...]:
    close = 100.0 + k
    return ticker, day, close - 1, close + 2, close - 3, close, close * 0.9, 1000 + k


def store(db: psycopg.Connection[Any], table: str, rows: list[tuple[Any, ...]]) -> None:
    query = sql.SQL("INSERT INTO {} (ticker, trade_date, open, high, low, close, adj_close, volume)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)")
    with db.cursor() as cur:
        cur.executemany(query.format(sql.Identifier(table)), rows)


def test_the_daily_views_give_every_bar_adjusted_ohlc_the_latest_bar_and_coverage(db: psycopg.Connection[Any]) -> None:
    etf = [bar("SPY", d, k) for k, d in enumerate(DAYS)]
    stock = [bar("AAPL", d, k) for k, d in enumerate(DAYS) if k != 4]  # the fifth session missing
    store(db, "etf_daily_bars", etf)
    store(db, "benchmark_daily_bars", etf[:3])
    store(db, "stock_daily_bars", stock)

    every = db.execute("SELECT universe, ticker, trade_date, close FROM daily_bars ORDER BY 1, 2, 3").fetchall()
    want = sorted([("etf", r[0], r[1], r[5]) for r in etf] + [("benchmark", r[0], r[1], r[5]) for r in etf[:3]]
                  + [("stock", r[0], r[1], r[5]) for r in stock])
    assert every == want

    adjusted = db.execute("SELECT trade_date, adj_open, adj_high, adj_low, adj_close, adjustment_factor FROM daily_bars_adjusted"
                          " WHERE universe = 'stock' ORDER BY 1").fetchall()
    for (day, o, h, low, adj, factor), r in zip(adjusted, stock, strict=True):
        f = r[6] / r[5]
        assert day == r[1] and factor == pytest.approx(f)
        assert (o, h, low, adj) == pytest.approx((r[2] * f, r[3] * f, r[4] * f, r[6]))

    latest = db.execute("SELECT universe, ticker, trade_date FROM latest_daily_bars ORDER BY 1, 2").fetchall()
    assert latest == [("benchmark", "SPY", DAYS[2]), ("etf", "SPY", DAYS[-1]), ("stock", "AAPL", DAYS[-1])]

    coverage = {r[0]: r[1:] for r in db.execute(
        "SELECT universe, first_date, last_date, stored_sessions, expected_sessions, missing_sessions, due_sessions FROM daily_coverage")}
    due = len(trading_days(DAYS[-1] + dt.timedelta(days=1), closed_trading_days(1)[-1]))
    assert coverage["stock"] == (DAYS[0], DAYS[-1], 9, 10, 1, due)
    assert coverage["etf"] == (DAYS[0], DAYS[-1], 10, 10, 0, due)
    assert coverage["benchmark"][4:] == (0, len(trading_days(DAYS[3], closed_trading_days(1)[-1])))


def test_the_intraday_views_count_sessions_against_the_exchange_s_and_adjust_by_the_daily_factor(db: psycopg.Connection[Any]) -> None:
    from tasks.prices.intraday_store import ensure_months

    held = [DAYS[0], DAYS[1], DAYS[4]]  # DAYS[2] and DAYS[3] missing
    bars = [(day, hour) for day in held for hour in (14, 15)] + [(DAYS[4], 21)]  # and a post-market bar
    ensure_months(db, [dt.datetime.combine(DAYS[0], dt.time(14), dt.UTC)])
    for day, hour in bars:
        db.execute("INSERT INTO intraday_bars (ticker, interval, bar_start_at, session_date, regular, open, high, low, close, volume,"
                   " source) VALUES ('AAPL', '1h', %s, %s, %s, 1, 2, 0.5, 1.5, 10, 'yahoo')",
                   (dt.datetime.combine(day, dt.time(hour), dt.UTC), day, hour < 20))
    due = len(trading_days(DAYS[4] + dt.timedelta(days=1), closed_trading_days(1)[-1]))
    assert db.execute("SELECT ticker, interval, first_date, last_date, stored_sessions, expected_sessions, missing_sessions,"
                      " due_sessions, bars FROM intraday_coverage").fetchall() == [("AAPL", "1h", DAYS[0], DAYS[4], 3, 5, 2, due, 7)]

    # Adjusted prices: the session's daily factor (adj_close / close) where its daily bar is stored.
    store(db, "stock_daily_bars", [("AAPL", DAYS[0], 100.0, 102.0, 97.0, 100.0, 98.0, 1000)])  # factor 0.98
    got = db.execute("SELECT session_date, adj_open, adj_high, adj_low, adj_close, adjustment_factor, volume"
                     " FROM intraday_bars_adjusted ORDER BY bar_start_at").fetchall()
    assert [r[0] for r in got] == [day for day, _ in bars]
    for day, *prices, factor, volume in got:
        if day == DAYS[0]:
            assert prices == pytest.approx([0.98, 1.96, 0.49, 1.47]) and factor == pytest.approx(0.98) and volume == 10
        else:
            assert prices == [None] * 4 and factor is None  # no daily bar stored for the session


def test_every_user_facing_relation_and_view_column_is_documented_in_the_catalog(db: psycopg.Connection[Any]) -> None:
    views = ["daily_bars", "daily_bars_adjusted", "latest_daily_bars", "daily_coverage", "latest_intraday_bars", "nyse_sessions"]
    for name in views:
        (said,) = db.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (name,)).fetchone() or (None,)
        assert said, name
    undocumented = db.execute(  # every column of every relation in the data's schema, tables and views alike
        "SELECT c.relname || '.' || a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND col_description(c.oid, a.attnum) IS NULL"
        " ORDER BY 1").fetchall()
    assert undocumented == [], undocumented


def test_the_reader_role_reads_the_data_and_the_views_and_none_of_the_machinery(db: psycopg.Connection[Any], dsn: str) -> None:
    login = f"analyst_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD NULL IN ROLE market_backfill_reader").format(sql.Identifier(login)))
    try:
        store(db, "etf_daily_bars", [bar("SPY", DAYS[0], 0)])
        with psycopg.connect(dsn, user=login, autocommit=True) as analyst:
            assert analyst.execute("SELECT ticker FROM daily_bars").fetchall() == [("SPY",)]
            assert analyst.execute("SELECT count(*) FROM nyse_sessions").fetchone() != (0,)
            for machinery in ("backfill_runs", "rate_budgets", "jsonl_file_checkpoints"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    analyst.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier("backfill_internal", machinery)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                analyst.execute("DELETE FROM etf_daily_bars")
    finally:
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def gen_schema() -> Any:
    """``docs/gen_schema.py``, which makes the docs' database page (a script of the docs build, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_schema", ROOT / "docs" / "gen_schema.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_the_docs_database_page_lists_each_relation_the_reader_may_read_with_its_catalog_comment(db: psycopg.Connection[Any]) -> None:
    gen = gen_schema()
    page = gen.page()
    granted = {r[0] for r in db.execute("SELECT table_name FROM information_schema.role_table_grants"
                                        " WHERE grantee = 'market_backfill_reader' AND privilege_type = 'SELECT'")}
    assert granted == set(gen.data_relations())
    for name in granted:
        (said,) = db.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (name,)).fetchone() or (None,)
        if said and said.startswith("Deprecated"):  # an old name: a row of the page's table of them
            assert f"| `{name}` | {said.split(': ', 1)[1]} |" in page.split("## Old names")[1], name
            continue
        assert said and f"### `{name}`\n\n{said}\n" in page, name  # the page says what the catalog says
        section = page.split(f"### `{name}`\n", 1)[1].split("\n### ", 1)[0]
        for column, text in db.execute("SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a"
                                       " WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped", (name,)):
            assert f"| `{column}` | {text.replace('|', '/')} |" in section, (name, column)  # and so for every column
    assert "## The machinery" in page and "`backfill_runs`" in page.split("## The machinery")[1]


def test_the_old_names_still_read_write_and_upsert_through_views_that_say_what_replaced_them(db: psycopg.Connection[Any]) -> None:
    when = dt.datetime(2025, 6, 2, 14, 30, tzinfo=dt.UTC)
    upsert = ("INSERT INTO txn_events (ticker, event_time, source) VALUES ('AAPL', %s, 'news')"
              " ON CONFLICT (ticker, event_time, source) DO NOTHING")
    db.execute(upsert, (when,))
    db.execute(upsert, (when,))  # the old conflict target, on the old column names
    assert db.execute("SELECT ticker, event_at, valuation_status FROM events").fetchall() == [("AAPL", when, "pending")]
    db.execute("UPDATE txn_events SET source = 'filing' WHERE event_time = %s", (when,))
    assert db.execute("SELECT source FROM events").fetchall() == [("filing",)]
    db.execute('INSERT INTO analytics_trending_sectors (as_of_date, ticker, "window", relative_return, rank)'
               " VALUES (%s, 'XLK', 20, 0.031, 1)", (DAYS[-1],))
    assert db.execute("SELECT window_sessions, rank FROM trending_sectors").fetchall() == [(20, 1)]
    db.execute("INSERT INTO collected_meta_etf (etf, as_of_date, holding, weight, source) VALUES ('XLK', %s, 'AAPL', 0.2, 'ssga')",
               (DAYS[0],))
    assert db.execute("SELECT etf_ticker, ticker FROM etf_holdings").fetchall() == [("XLK", "AAPL")]
    store(db, "collected_daily_etf_ohlc", [bar("SPY", DAYS[0], 0)])
    assert db.execute("SELECT ticker, trade_date FROM etf_daily_bars").fetchall() == [("SPY", DAYS[0])]
    assert db.execute("SELECT week_start, sessions FROM collected_weekly_etf_bars").fetchall() == [(DAYS[0], 1)]
    (said,) = db.execute("SELECT obj_description('txn_events'::regclass, 'pg_class')").fetchone() or (None,)
    assert said and said.startswith("Deprecated") and "events (event_time: event_at)" in said


def _columns(db: psycopg.Connection[Any]) -> list[tuple[str, str, str, str | None, str | None]]:
    """(relation, column, type, the relation's comment, the column's comment) of the data schema."""
    return db.execute(
        "SELECT c.relname, a.attname, format_type(a.atttypid, NULL), obj_description(c.oid, 'pg_class'),"
        " col_description(c.oid, a.attnum) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1, a.attnum").fetchall()


COUNTS_OF_SHARES = {"shares", "shares_held", "shares_outstanding", "volume", "bid_size", "ask_size"}


def test_the_data_follows_one_naming_convention_counts_shares_whole_and_no_column_is_a_reserved_word(db: psycopg.Connection[Any]) -> None:
    reserved = {r[0] for r in db.execute("SELECT word FROM pg_get_keywords() WHERE catcode = 'R'")}
    bad = []
    for relation, column, kind, said, column_said in _columns(db):
        if (said or "").startswith("Deprecated") or (column_said or "").startswith("Deprecated"):
            continue  # an old name, kept for a release
        if column in reserved or column in {"symbol", "etf", "holding", "sector_etf"}:
            bad.append((relation, column, "a reserved word, or not ticker"))
        elif kind == "timestamp with time zone" and not column.endswith("_at"):
            bad.append((relation, column, "an instant not ending in _at"))
        elif kind == "date" and not column.endswith("_date"):
            bad.append((relation, column, "a date not ending in _date"))
        elif column in COUNTS_OF_SHARES and kind not in ("bigint", "integer"):
            bad.append((relation, column, "a count of shares not a whole number"))
    assert not bad


def test_no_comment_names_an_old_name(db: psycopg.Connection[Any]) -> None:
    import re

    migration = "".join((ROOT / "sql" / name).read_text(encoding="utf-8") for name in ("035_naming_convention.sql",
                                                                                    "036_observer_names.sql"))
    old = set(re.findall(r"ALTER (?:TABLE|VIEW) (\w+) RENAME TO", migration))
    old |= set(re.findall(r"RENAME COLUMN (\w+) TO", migration)) - {"session", "holding", "etf", "ts", "symbol"}  # words a text may use
    assert {"txn_events", "event_time", "scalp_ticks", "bar_time"} <= old
    for relation, column, _, said, column_said in _columns(db):
        if relation in old:
            continue
        for text in (said, column_said):
            named = {w for w in re.findall(r"\w+", text or "") if w in old}
            assert not named or (text or "").startswith("Deprecated"), (relation, column, text)


@pytest.mark.parametrize("table", ["etf_daily_bars", "stock_daily_bars", "benchmark_daily_bars"])
def test_an_impossible_daily_bar_is_refused_by_the_database_too(db: psycopg.Connection[Any], table: str) -> None:
    store(db, table, [bar("SPY", DAYS[0], 0)])  # a sane one goes in
    inverted = ("SPY", DAYS[1], 100.0, 99.0, 101.0, 100.0, 99.0, 1000)  # high below low
    negative = ("SPY", DAYS[2], 100.0, 101.0, 99.0, 100.0, 99.0, -5)  # a negative volume
    for row in (inverted, negative):
        with pytest.raises(psycopg.errors.CheckViolation):
            store(db, table, [row])
    assert db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone() == (1,)


def test_the_funds_holding_a_stock_are_found_by_an_index_and_no_index_repeats_another_s_lead(db: psycopg.Connection[Any]) -> None:
    db.execute("SET enable_seqscan = off")  # an empty table: the planner would scan it; ask whether an index can answer
    plan = "\n".join(r[0] for r in db.execute("EXPLAIN SELECT etf_ticker FROM etf_holdings WHERE ticker = 'AAPL'"))
    assert "etf_holdings_ticker" in plan, plan
    indexes = db.execute("SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, i.indkey::text FROM pg_index i"
                         " JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                         " WHERE n.nspname = current_schema() AND NOT i.indisunique").fetchall()
    for table, name, keys in indexes:  # a plain index whose columns lead another index of the table is dead weight
        longer = [other for t, other, k in indexes if t == table and other != name and k.startswith(keys + " ")]
        assert not longer, (name, longer)


def test_a_split_ratio_and_a_dividend_amount_are_columns_of_their_own_and_share_counts_whole(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO dividends_and_splits (ticker, ex_date, kind, value) VALUES ('AAPL', '2020-08-31', 'split', 4),"
               " ('AAPL', '2025-05-12', 'dividend', 0.26)")
    rows = db.execute("SELECT kind, split_ratio, dividend_amount FROM dividends_and_splits ORDER BY ex_date").fetchall()
    assert rows == [("split", 4.0, None), ("dividend", None, 0.26)]
    db.execute("INSERT INTO shares_outstanding (ticker, observed_date, shares) VALUES ('AAPL', '2025-06-30', %s)",
               (14_935_826_000.0,))
    assert db.execute("SELECT shares, pg_typeof(shares)::text FROM shares_outstanding").fetchone() == (14_935_826_000, "bigint")


def test_every_data_table_has_a_load_time_column_and_a_run(db: psycopg.Connection[Any]) -> None:
    load_times = {"fetched_at", "imported_at", "computed_at", "loaded_at", "first_seen_at"}
    tables = [r[0] for r in db.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                       " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition")]
    assert "observer_gaps" in tables and "etf_daily_bars" in tables
    for table in tables:
        if table == "nyse_sessions":
            continue  # the exchange's calendar, made by the tool, not loaded
        columns = {r[0] for r in db.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))}
        assert columns & load_times and "run_id" in columns, (table, columns)


def _relations(conn: psycopg.Connection[Any], schema: str) -> set[str]:
    return {r[0] for r in conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                       " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm')", (schema,))}


MACHINERY = {"market_backfill_migrations", "backfill_runs", "backfill_run_items", "rate_budgets", "jsonl_file_checkpoints",
             "jsonl_origins", "jsonl_rejects", "partition_moves", "price_fetch_coverage", "price_changes", "shares_outstanding_fetches",
             "scalp_tick_copies", "swing_bar_versions", "intraday_sessions_fetched", "intraday_split_restatements"}


def test_the_data_schema_lists_the_data_alone_and_the_machinery_and_partitions_live_beside_it(db: psycopg.Connection[Any],
                                                                                              dsn: str) -> None:
    from tasks.jsonl.partitions import ensure_days
    from tasks.prices.intraday_store import ensure_months
    ensure_days(db, [DAYS[0]])
    ensure_months(db, [dt.datetime(2025, 6, 2, 14, tzinfo=dt.UTC)])
    with psycopg.connect(dsn) as user:  # as a user connects: PostgreSQL's own search path
        assert _relations(user, "public") == set(gen_schema().data_relations())  # what the reader role is granted, nothing else
        partitions = {f"{table}_p{day:%Y%m%d}" for table in ("observer_ticks", "observer_bars_1m") for day in DAYS[:2]}
        assert _relations(user, "backfill_internal") == MACHINERY | partitions | {"intraday_bars_p202506"}
        # the source documents' check queries name the data as before
        user.execute("INSERT INTO scalp_ticks (symbol, event_time, session_id, source_file, source_line)"
                     " VALUES ('X', %s, 's', 'f', 1)", (dt.datetime.combine(DAYS[0], dt.time(15), dt.UTC),))
        assert user.execute("SELECT count(*) FROM scalp_ticks").fetchone() == (1,)
        assert user.execute("SELECT count(*) FROM collected_daily_etf_ohlc").fetchone() == (0,)
        (said,) = user.execute("SELECT obj_description(to_regnamespace('backfill_internal'), 'pg_namespace')").fetchone() or (None,)
        assert said and "machinery" in said


@pytest.mark.empty_database
def test_an_older_database_s_machinery_and_partitions_move_out_of_the_data_schema_with_their_rows(dsn: str) -> None:
    from tasks.core.db import migrate
    from test.fix_db import migrate_before

    day = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            migrate_before(conn, "030")  # a database made before the machinery had a schema of its own
            conn.execute("INSERT INTO backfill_runs (flow, command, status, started_at) VALUES ('etf-backfill', 'x', 'done', now())")
            conn.execute(sql.SQL("CREATE TABLE scalp_ticks_p20260105 PARTITION OF scalp_ticks FOR VALUES FROM ({}) TO ({})").format(
                sql.Literal(day), sql.Literal(day + dt.timedelta(days=1))))
            conn.execute("INSERT INTO scalp_ticks (symbol, event_time, session_id, source_file, source_line)"
                         " VALUES ('X', %s, 's', 'f', 1)", (day,))
        assert "030_machinery_schema" in migrate(conn)
    with psycopg.connect(dsn) as user:
        assert not _relations(user, "public") & (MACHINERY | {"scalp_ticks_p20260105", "schema_migrations"})
        assert user.execute("SELECT flow, status FROM backfill_internal.backfill_runs").fetchall() == [("etf-backfill", "done")]
        assert user.execute("SELECT count(*) FROM backfill_internal.observer_ticks_p20260105").fetchone() == (1,)  # renamed by 036
        assert user.execute("SELECT count(*) FROM observer_ticks").fetchone() == (1,)  # still attached: read through the parent
        (recorded,) = user.execute("SELECT count(*) FROM backfill_internal.market_backfill_migrations").fetchone() or (0,)
        assert recorded == len(list((ROOT / "sql").glob("[0-9][0-9][0-9]_*.sql")))


@pytest.mark.empty_database
def test_an_upgrade_says_unvalued_events_pending_in_batches_and_goes_on_after_one_fails(dsn: str) -> None:
    from tasks.core.db import migrate
    from tasks.core.errors import StoreError
    from tasks.core.upgrades import mark_pending_events, statuses_pending
    from test.fix_db import migrate_before

    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.transaction():
            migrate_before(conn, "031")  # events imported before 031: no status until valued
            conn.execute("INSERT INTO txn_events (ticker, event_time, source)"
                         " SELECT 'T' || n, now() - n * interval '1 minute', 'news' FROM generate_series(1, 2500) AS n")
            conn.execute("UPDATE txn_events SET valuation_status = 'ok' WHERE event_id % 10 = 0")  # every tenth valued
            conn.execute("CREATE FUNCTION refuse_late() RETURNS trigger LANGUAGE plpgsql AS"
                         " $$BEGIN RAISE EXCEPTION 'refused %', NEW.event_id; END$$")
            conn.execute("CREATE TRIGGER refuse_late BEFORE UPDATE ON txn_events FOR EACH ROW WHEN (NEW.event_id > 2000)"
                         " EXECUTE FUNCTION refuse_late()")
        with pytest.raises(StoreError, match="the upgrade of the events' statuses failed"):
            migrate(conn)  # the migrations commit; the batch that meets the trigger is rolled back
        assert statuses_pending(conn) and conn.execute("SELECT count(*) FROM events WHERE valuation_status IS NULL").fetchone() == (2250,)
        said: list[str] = []
        with pytest.raises(psycopg.errors.RaiseException):
            mark_pending_events(conn, said.append, batch_ids=1000)
        assert conn.execute("SELECT count(*) FROM events WHERE valuation_status IS NULL").fetchone() == (450,)  # ids 1-2000 done
        assert said == ["Marking 2,250 events not valued yet as pending (upgrade 031), 1,000 event ids a transaction"]
        conn.execute("DROP TRIGGER refuse_late ON events")
        said.clear()
        assert mark_pending_events(conn, said.append, batch_ids=1000) == 450  # the next command goes on from there
        assert said[-1] == "Marked 450 events pending (upgrade 031)" and not statuses_pending(conn)
        counts = dict(conn.execute("SELECT valuation_status, count(*) FROM events GROUP BY 1").fetchall())
        assert counts == {"pending": 2250, "ok": 250}
        (nullable,) = conn.execute("SELECT NOT attnotnull FROM pg_attribute WHERE attrelid = 'events'::regclass"
                                   " AND attname = 'valuation_status'").fetchone() or (True,)
        assert not nullable and migrate(conn) == []  # required now; and nothing left to do


def test_an_event_waits_as_pending_and_a_status_or_source_the_tool_does_not_have_is_refused(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO events (ticker, event_at, source) VALUES ('AAPL', now(), 'news')")
    assert db.execute("SELECT valuation_status FROM events").fetchall() == [("pending",)]
    refused = [("UPDATE events SET valuation_status = NULL", psycopg.errors.NotNullViolation),
               ("UPDATE events SET valuation_status = 'maybe'", psycopg.errors.CheckViolation),
               ("INSERT INTO etf_holdings (etf_ticker, as_of_date, ticker, weight, source)"
                " VALUES ('XLK', '2025-06-02', 'AAPL', 0.2, 'scraped')",
                psycopg.errors.CheckViolation)]
    for statement, error in refused:
        with pytest.raises(error), db.transaction():
            db.execute(statement)  # type: ignore[arg-type]
    row = ("SPY", DAYS[0], 1.0, 2.0, 0.5, 1.5, 1.5, 10)
    with pytest.raises(psycopg.errors.CheckViolation), db.transaction():
        db.execute("INSERT INTO etf_daily_bars (ticker, trade_date, open, high, low, close, adj_close, volume, source)"
                   " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'elsewhere')", row)


def test_every_row_a_command_writes_carries_its_run_and_a_rerun_that_changes_nothing_keeps_it(
        run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    from test.jsonl_tree import swing, tick, write

    end = ("--end", "2025-07-08", "--delay", "0", "--retry-wait", "0.01")
    assert run_cli("flows.etf_backfill", "--days", "5", *end, "--tickers", "XLK").code == 0
    start = dt.datetime(2026, 1, 22, 1, tzinfo=dt.UTC)
    write(tmp_path / "jsonl" / "scalp" / "20260122_0100.jsonl", [tick("005930", start + dt.timedelta(seconds=k), k) for k in range(90)])
    write(tmp_path / "jsonl" / "swing" / "20260122_0100.jsonl", [swing("005930", start + dt.timedelta(minutes=10 * k), k)
                                                                   for k in range(3)])
    assert run_cli("flows.jsonl_ingest", "--root", str(tmp_path / "jsonl")).code == 0
    (tmp_path / "events.csv").write_text("ticker,event_time,source\nKNWN,2025-07-03 12:00:00+00:00,news\n", encoding="utf-8")
    assert run_cli("flows.event_valuation", "--import-csv", str(tmp_path / "events.csv"), *end).code == 0
    assert run_cli("flows.etf_backfill", "--days", "5", *end, "--tickers", "XLK").code == 0  # the same bars: nothing rewritten
    assert run_cli("flows.backfill", "--tickers", "SPY", "--interval", "1h", "--start", "2025-10-30", "--end", "2025-10-31", "--delay",
                   "0", "--retry-wait", "0.01").code == 0
    with psycopg.connect(dsn) as user:
        runs = user.execute("SELECT flow, run_id FROM backfill_internal.backfill_runs WHERE status = 'done' ORDER BY run_id").fetchall()
        assert [flow for flow, _ in runs] == ["etf-backfill", "jsonl-ingest", "event-valuation", "etf-backfill", "backfill"], runs
        first, ingest, valuation, _, intraday = (run_id for _, run_id in runs)
        assert user.execute("SELECT DISTINCT run_id FROM intraday_bars").fetchall() == [(intraday,)]
        carried = {table: user.execute(sql.SQL("SELECT DISTINCT ticker, run_id FROM {} ORDER BY 1").format(sql.Identifier(table)))
                   .fetchall() for table in ("etf_daily_bars", "events", "stock_daily_bars")}
        carried |= {table: user.execute(sql.SQL("SELECT DISTINCT ticker, run_id FROM {}").format(sql.Identifier(table))).fetchall()
                    for table in ("observer_ticks", "observer_bars_1m", "observer_bars_10m")}
    # the valuation stores SPY (its benchmark) and KNWN's bars: those carry its run
    assert carried == {"etf_daily_bars": [("SPY", valuation), ("XLK", first)], "events": [("KNWN", valuation)],
                       "stock_daily_bars": [("KNWN", valuation)], "observer_ticks": [("005930", ingest)],
                       "observer_bars_1m": [("005930", ingest)], "observer_bars_10m": [("005930", ingest)]}


def test_every_table_has_a_primary_key(db: psycopg.Connection[Any]) -> None:
    keyless = db.execute("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                         " WHERE n.nspname IN ('public', 'backfill_internal') AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
                         " AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')"
                         " ORDER BY 1").fetchall()
    assert keyless == []


def test_every_query_the_docs_give_runs_as_a_user_connects(db: psycopg.Connection[Any], dsn: str) -> None:
    """The ```sql blocks of the docs, each statement run on a migrated database through a plain
    connection (PostgreSQL's own search path, as psql's): a renamed or moved table fails here."""
    import re

    statements = [text.strip() for page in sorted((ROOT / "docs").glob("*.md"))
                  for block in re.findall(r"```sql\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)
                  for text in block.split(";") if text.strip()]
    assert len(statements) >= 4
    with psycopg.connect(dsn) as user:
        for text in statements:
            user.execute(text)  # type: ignore[call-overload]
            user.rollback()
