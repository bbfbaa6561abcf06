"""Coverage report: what is stored, what is missing, what is due, per ticker and table.

    backfill-status [--days 60] [--table all] [--tickers SPY,XLK] [--json] [--plot coverage.png]
    backfill-status --jsonl [--start D] [--end D] [--json]

Daily bars: exit code 0 when the requested range has no gaps, 1 when it has (so a scheduler can
alert). ``--jsonl``: the scalp data's coverage per symbol and UTC day (minutes below 0.8) and
the critical gaps per day, exit 1 when there is any. 2 on bad input. Reads only: nothing is
written, not even a migration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from flows.cli import ArgumentParser, OnlyOnce, add_renamed, int_in, run_as_command, session_date
from flows.config import data_dsn
from tasks.core.calendar import MAX_DAYS, future_end_note, last_closed_session, sessions_back
from tasks.core.db import open_database
from tasks.core.errors import BadInput, Outcome
from tasks.core.plots import check_plot_path
from tasks.core.tickers import parse_ticker_list
from tasks.jsonl.coverage import LOW_COVERAGE, Coverage, range_coverage
from tasks.prices.coverage_report import coverage_report, format_table, intraday_coverage, plot_heatmap
from tasks.prices.intraday_plan import INTRADAY
from tasks.prices.store import BENCHMARK_TABLE, ETF_TABLE, STOCK_TABLE

TABLES = {"etf": [ETF_TABLE], "stock": [STOCK_TABLE], "benchmark": [BENCHMARK_TABLE], "all": [ETF_TABLE, STOCK_TABLE, BENCHMARK_TABLE],
          "intraday": []}


EXAMPLES = (  # shown by --help as typed; a test parses each
    "backfill-status --tickers AAPL,MSFT --days 250",
    "backfill-status --table intraday --interval 1m --json",
    "backfill-status --plot coverage.png",
)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="backfill-status", examples=EXAMPLES,
                       description="Per ticker and table: first/last date, stored vs expected NYSE sessions, "
                                   "gaps, last fetch, last error, and whether it is due.")
    p.add_argument("--days", type=int_in(1, MAX_DAYS), default=60, metavar="N", help="NYSE sessions back from --end (default: %(default)s)")
    start = p.add_argument("--start", dest="start_date", type=session_date, default=None, metavar="YYYY-MM-DD",
                           help="first session of the range (instead of --days)")
    end = p.add_argument("--end", dest="end_date", type=session_date, default=None, metavar="YYYY-MM-DD",
                         help="last session of the range (default: the last closed NYSE session)")
    add_renamed(p, start, "--start-date")
    add_renamed(p, end, "--end-date")
    p.add_argument("--table", choices=sorted(TABLES), default=None, help="etf, stock, benchmark or all (default: all, the daily tables); "
                   "intraday: the intraday bars, per ticker and interval, in sessions fetched whole")
    p.add_argument("--interval", action=OnlyOnce,
                   help="with --table intraday: only these intervals, comma-separated (default: every one stored)")
    p.add_argument("--tickers", metavar="A,B,...", action=OnlyOnce,
                   help="comma-separated tickers (default: every ticker stored); a ticker never stored shows as all gaps")
    p.add_argument("--json", action="store_true", help="print the report as JSON (one object) instead of a table")
    p.add_argument("--jsonl", action="store_true", help=f"instead: the JSONL scalp data's coverage per symbol and UTC day from "
                   f"--start (default: --days before the end) to --end (default: today): minutes below {LOW_COVERAGE}, "
                   "and critical gaps (>= 60 s) per day")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw a coverage heatmap (tickers x sessions) to this PNG")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)

    def body() -> Outcome:
        ns = build_parser().parse_args(args)
        if ns.jsonl:
            return jsonl_report(ns)
        end = ns.end_date or last_closed_session()
        note = future_end_note(end, last_closed_session())
        if note:  # a future end has nothing stored yet: the report ends where the sessions do
            print(note, file=sys.stderr)
            end = last_closed_session()
        start = ns.start_date or sessions_back(ns.days, end)[0]
        if start > end:
            raise BadInput(f"--start {start} is after the end date {end}")
        if ns.plot is not None:
            check_plot_path(ns.plot)
        tickers = parse_ticker_list(ns.tickers) if ns.tickers else None
        if ns.interval is not None and ns.table != "intraday":
            raise BadInput("--interval applies to --table intraday only")
        intervals = [i.strip() for i in ns.interval.split(",") if i.strip()] if ns.interval else None
        unknown = sorted(set(intervals or []) - set(INTRADAY))
        if unknown:
            raise BadInput(f"--interval: not an intraday interval ({', '.join(INTRADAY)}): {', '.join(unknown)}")
        conn = open_database(data_dsn(), dry_run=True)
        try:
            if ns.table == "intraday":
                report = intraday_coverage(conn, start, end, tickers, intervals)
            else:
                report = coverage_report(conn, TABLES[ns.table or "all"], start, end, tickers)
        finally:
            conn.rollback()
            conn.close()
        if ns.json:
            print(json.dumps({"start": start.isoformat(), "end": end.isoformat(), "has_gaps": report.has_gaps,
                              "tickers": [r.as_json() for r in report.rows]}, indent=2))
        else:
            print("\n".join(format_table(report)))
        if ns.plot is not None:
            width, height = plot_heatmap(report, ns.plot)
            print(f"Heatmap written to {ns.plot} ({width}x{height})", file=sys.stderr if ns.json else sys.stdout)
        return Outcome.SOME_FAILED if report.has_gaps else Outcome.DONE

    return run_as_command(body)


def jsonl_report(ns: argparse.Namespace) -> Outcome:
    given = [flag for flag, value in (("--table", ns.table), ("--tickers", ns.tickers), ("--plot", ns.plot)) if value is not None]
    if given:
        verb = "applies" if len(given) == 1 else "apply"
        raise BadInput(f"--jsonl reports every symbol of the scalp data; {', '.join(given)} {verb} to the price tables only")
    end = ns.end_date or dt.datetime.now(dt.UTC).date()
    start = ns.start_date or end - dt.timedelta(days=ns.days - 1)
    if start > end:
        raise BadInput(f"--start {start} is after the end date {end}")
    conn = open_database(data_dsn(), dry_run=True)
    try:
        coverage = range_coverage(conn, start, end)
    finally:
        conn.rollback()
        conn.close()
    if ns.json:
        print(json.dumps({"start": start.isoformat(), "end": end.isoformat(), **coverage.as_dict()}, indent=2))
    else:
        print("\n".join(format_jsonl(coverage, start, end)))
    return Outcome.SOME_FAILED if coverage.alarming else Outcome.DONE


def format_jsonl(coverage: Coverage, start: dt.date, end: dt.date) -> list[str]:
    out = [f"JSONL scalp coverage {start} .. {end} (UTC days; minutes below {LOW_COVERAGE} of 120 ticks a minute)",
           f"{'symbol':<12} {'day':<10} {'minutes':>8} {'low':>6} {'lowest':>7}"]
    out += [f"{d.symbol:<12} {d.day.isoformat():<10} {d.minutes:>8,} {d.low:>6,} {d.lowest:>7.3f}" for d in coverage.days]
    out += coverage.lines(limit=1000)
    return out


if __name__ == "__main__":
    sys.exit(main())
