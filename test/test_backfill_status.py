"""The coverage report against a table with gaps punched into it."""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path

import psycopg
import pytest

from test.fake_yahoo import FakeYahoo
from test.fix_db import table_rows
from test.fix_yahoo import CliRunner
from test.nyse_days import trading_days

ETF = "flows.etf_backfill"
STATUS = "flows.backfill_status"
RANGE = ("--start", "2025-06-02", "--end", "2025-06-30")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_finds_punched_gaps_and_exits_1(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    assert run_cli(ETF, "--days", "20", "--end", "2025-06-30", "--delay", "0", "--tickers", "SPY,XLK,XLV").code == 0
    clean = run_cli(STATUS, *RANGE, "--json", as_process=True)  # the command as its own process, once
    assert clean.code == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["has_gaps"] is False
    holes = [dt.date(2025, 6, 10), dt.date(2025, 6, 20)]  # 06-19 is a holiday (Juneteenth): never a gap
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM etf_daily_bars WHERE ticker = 'XLK' AND trade_date = ANY(%s)", (holes,))
        conn.execute("DELETE FROM etf_daily_bars WHERE ticker = 'XLV' AND trade_date >= '2025-06-27'")
    result = run_cli(STATUS, *RANGE, "--json")
    assert result.code == 1
    report = {r["ticker"]: r for r in json.loads(result.stdout)["tickers"]}
    sessions = trading_days(dt.date(2025, 6, 2), dt.date(2025, 6, 30))
    assert report["XLK"]["gaps"] == [d.isoformat() for d in holes]
    assert report["XLK"]["stored"] == len(sessions) - 2 and report["XLK"]["expected"] == len(sessions)
    assert report["XLK"]["due"] is False
    assert report["XLV"]["gaps"] == ["2025-06-27", "2025-06-30"] and report["XLV"]["due"] is True and report["XLV"]["last"] == "2025-06-26"
    assert report["SPY"]["gaps"] == [] and report["SPY"]["last_fetch"] is not None
    text = run_cli(STATUS, *RANGE)
    assert text.code == 1 and "missing: 2025-06-10, 2025-06-20" in text.stdout
    assert "3 ticker(s); 2 with gaps (4 missing sessions); 1 due" in text.stdout
    plot = tmp_path / "coverage.png"
    drawn = run_cli(STATUS, *RANGE, "--plot", str(plot))
    assert drawn.code == 1 and png_size(plot) == (1200, 200 + 18 * 3)
    assert len(table_rows(dsn, "etf_daily_bars")) == 3 * 20 - 4  # the report wrote nothing


@pytest.mark.empty_database
def test_never_stored_ticker_and_errors_are_reported(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    fake_yahoo.unknown = {"XLE"}
    assert run_cli(ETF, "--days", "5", "--end", "2025-06-30", "--delay", "0", "--tickers", "XLK,XLE").code == 0  # no data: no failure
    result = run_cli(STATUS, "--days", "5", "--end", "2025-06-30", "--tickers", "XLK,XLE", "--table", "etf", "--json")
    assert result.code == 1
    report = {r["ticker"]: r for r in json.loads(result.stdout)["tickers"]}
    assert report["XLE"]["stored"] == 0 and len(report["XLE"]["gaps"]) == 5 and report["XLE"]["due"] is True
    assert report["XLE"]["last_error"].startswith("no data: ") and "unknown or delisted" in report["XLE"]["last_error"]
    assert report["XLK"]["gaps"] == [] and report["XLK"]["last_error"] is None


def test_bad_flags_exit_2(run_cli: CliRunner) -> None:
    for args in (("--plot", "x.jpg"), ("--start", "2025-07-01", "--end", "2025-06-01"), ("--table", "nope"),
                 ("--start", "1800-01-01")):
        result = run_cli(STATUS, *args)
        assert result.code == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    early = run_cli(STATUS, "--start", "1800-01-01")
    assert "must be a date from 1980-01-02 (the NYSE calendar's first session)" in early.stderr


def test_a_future_end_date_reports_up_to_the_last_closed_session(run_cli: CliRunner, dsn: str) -> None:
    from tasks.core.calendar import last_closed_session

    result = run_cli(STATUS, "--end", "2099-12-31", "--days", "3", "--json")
    assert result.code in (0, 1) and "Traceback" not in result.stderr, result.stderr
    assert "has not closed yet" in result.stderr
    assert json.loads(result.stdout)["end"] == last_closed_session().isoformat()


def test_a_read_only_user_can_report_and_dry_run(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo, tmp_path: Path) -> None:
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    assert run_cli(ETF, "--days", "5", "--end", "2025-06-30", "--delay", "0", "--tickers", "SPY").code == 0
    dbname = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reader')"
                      " THEN CREATE ROLE reader LOGIN; END IF; END $$")
        admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO reader").format(sql.Identifier(str(dbname))))
        admin.execute("GRANT USAGE ON SCHEMA public TO reader")
        admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
        admin.execute("GRANT USAGE ON SCHEMA backfill_internal TO reader")  # the runs and budgets it reports on
        admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA backfill_internal TO reader")
    reader = make_conninfo(dsn, user="reader")
    report = run_cli(STATUS, "--start", "2025-06-24", "--end", "2025-06-30", "--json", env={"DATABASE_URL": reader})
    assert report.code == 0, report.stderr
    assert json.loads(report.stdout)["tickers"][0]["ticker"] == "SPY"
    dry = run_cli(ETF, "--days", "5", "--end", "2025-06-30", "--tickers", "SPY,XLK", "--dry-run", env={"DATABASE_URL": reader})
    assert dry.code == 0, dry.stderr
    assert "XLK" in dry.stdout and fake_yahoo.chart_requests("XLK") == []


def test_a_plot_that_cannot_be_written_is_one_line_exit_2(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    assert run_cli(ETF, "--days", "5", "--end", "2025-06-30", "--delay", "0", "--tickers", "SPY").code == 0
    result = run_cli(STATUS, *RANGE, "--plot", "/proc/x.png")
    assert result.code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --plot /proc/x.png: cannot write it")


def test_the_jsonl_report_refuses_the_price_table_flags_instead_of_ignoring_them(run_cli: CliRunner, dsn: str) -> None:
    for flags in (["--table", "etf"], ["--tickers", "SPY"], ["--plot", "x.png"], ["--tickers", "SPY", "--table", "all"]):
        result = run_cli("flows.backfill_status", "--jsonl", *flags)
        assert result.code == 2, result.stdout + result.stderr
        named = [f for f in flags if f.startswith("--")]
        verb = "applies" if len(named) == 1 else "apply"
        assert f"--jsonl reports every symbol of the scalp data; {', '.join(sorted(named, key=['--table', '--tickers', '--plot'].index))}" \
               f" {verb} to the price tables only" in result.stderr + result.stdout
    assert run_cli("flows.backfill_status", "--jsonl", "--start", "2026-01-22", "--end", "2026-01-23").code == 0


@pytest.mark.parametrize("url, secret", [("postgresql://u:S3CR/ETPW@127.0.0.1:1/db", "ETPW"),
                                         ("postgresql://u:S3@CRET@127.0.0.1:1/db", "CRET"), ("sometokenS3CRETPW", "S3CRETPW")])
def test_a_database_url_with_a_password_is_never_echoed(run_cli: CliRunner, url: str, secret: str) -> None:
    result = run_cli(STATUS, env={"DATABASE_URL": url})
    assert result.code == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert secret not in result.stdout + result.stderr and "S3" not in result.stderr


def test_missing_history_before_the_first_bar_counts_and_tickers_select_rows(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                                              tmp_path: Path) -> None:
    """A backfill that did not reach the asked start is not complete (it showed 5/5, 0 gaps), and
    ``--tickers`` gives no row in a table that never held the ticker (it invented a benchmark row)."""
    assert run_cli(ETF, "--days", "5", "--end", "2025-06-30", "--delay", "0", "--tickers", "XLK").code == 0
    result = run_cli(STATUS, *RANGE, "--tickers", "XLK,XLF", "--json")
    assert result.code == 1
    rows = json.loads(result.stdout)["tickers"]
    sessions = trading_days(dt.date(2025, 6, 2), dt.date(2025, 6, 30))
    assert [(r["table"], r["ticker"]) for r in rows] == [("etf_daily_bars", "XLK"), ("(in no table)", "XLF")]
    assert rows[0]["gaps"] == [d.isoformat() for d in sessions[:-5]] and rows[0]["stored"] == 5
    assert rows[0]["expected"] == len(sessions) and rows[0]["before_first"] == len(sessions) - 5
    assert len(rows[1]["gaps"]) == len(sessions) and rows[1]["due"] is True
    text = run_cli(STATUS, *RANGE, "--tickers", "XLK")
    assert f"{len(sessions) - 5} of them before its first stored session (2025-06-24)" in text.stdout


def test_a_heatmap_is_readable_by_others_as_any_new_file_is(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                             tmp_path: Path) -> None:
    import os
    import stat

    assert run_cli(ETF, "--days", "5", "--end", "2025-06-30", "--delay", "0", "--tickers", "SPY").code == 0
    plot = tmp_path / "coverage.png"
    assert run_cli(STATUS, *RANGE, "--plot", str(plot)).code == 1
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(plot.stat().st_mode) == 0o666 & ~mask  # it was 0600 (the temporary file's)
