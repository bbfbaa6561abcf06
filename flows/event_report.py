"""Event study: per event source, the excess returns after the events and the CAAR around them.

    event-report [--source news,filings] [--start 2025-01-01] [--end 2025-06-30] [--json] [--plot caar.png]

Steps (``tasks/events/report.py``): the valued events the filters select → CAR(k), k = -5..+20,
from stored bars (the ticker's and SPY's adjusted closes; nothing is fetched) → per source: counts,
mean and median excess return at +1/+5/+20, reaction shares, CAAR with a 95% band → a table,
JSON, or a picture. Exit code 0, or 2 on bad input. Reads only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from flows.cli import ArgumentParser, OnlyOnce, add_renamed, iso_date, run_as_command
from flows.config import data_dsn
from tasks.core.db import open_database
from tasks.core.errors import BadInput, Outcome
from tasks.core.plots import check_plot_path
from tasks.events.report import format_table, nothing_matched, plot, run_study, terminal_table, valued_sources

EXAMPLES = (  # shown by --help as typed; a test parses each
    "event-report",
    "event-report --source earnings --start 2025-01-01 --json",
    "event-report --plot caar.png",
)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="event-report", examples=EXAMPLES,
                       description="What the market did after each kind of event: excess returns and CAAR from stored bars.")
    p.add_argument("--source", action=OnlyOnce, help="comma-separated event sources (default: every source)")
    start = p.add_argument("--start", type=iso_date, default=None, metavar="YYYY-MM-DD",
                           help="first event date, New York (default: all)")
    end = p.add_argument("--end", type=iso_date, default=None, metavar="YYYY-MM-DD", help="last event date, New York (default: all)")
    add_renamed(p, start, "--from")
    add_renamed(p, end, "--to")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--plot", type=Path, metavar="FILE.png", help="also draw CAAR(k) per source with its 95%% band to this PNG")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)

    def body() -> Outcome:
        ns = build_parser().parse_args(args)
        if ns.start and ns.end and ns.start > ns.end:
            raise BadInput(f"--start {ns.start} is after --end {ns.end}")
        if ns.plot is not None:
            check_plot_path(ns.plot)
        sources = [s.strip() for s in ns.source.split(",") if s.strip()] if ns.source else None
        conn = open_database(data_dsn(), dry_run=True)
        try:
            studies = run_study(conn, sources=sources, start=ns.start, end=ns.end)
            empty = None if studies else nothing_matched(sources, valued_sources(conn))
        finally:
            conn.rollback()
            conn.close()
        if ns.json:
            print(json.dumps({"from": ns.start.isoformat() if ns.start else None, "to": ns.end.isoformat() if ns.end else None,
                              "sources": [s.as_json() for s in studies]}, indent=2))
            if empty:
                print(empty, file=sys.stderr)  # the JSON stays parseable; the person reading is told
        elif empty:
            print(empty)
        elif sys.stdout.isatty():
            from rich.console import Console

            Console().print(terminal_table(studies))
        else:
            print("\n".join(format_table(studies)))
        if ns.plot is not None:
            plot(studies, ns.plot)
            print(f"CAAR plot written to {ns.plot}", file=sys.stderr if ns.json else sys.stdout)
        return Outcome.DONE

    return run_as_command(body)


if __name__ == "__main__":
    sys.exit(main())
