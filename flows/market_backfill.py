"""``market-backfill``: one command for the whole tool, each job a subcommand.

    market-backfill backfill --tickers AAPL,MSFT --start 2015-01-01
    market-backfill status --table intraday
    market-backfill info
    market-backfill db status|start|stop

Each subcommand is the command of the same job (``market-backfill etf-backfill ...`` is
``etf-backfill ...``: same flags, output and exit codes), whose module is imported only when it is
the one asked for, so ``--help`` and ``--version`` answer at once. The old command names stay.
argparse, not click or typer: every command's flags are argparse parsers already (and build the
flows' parameters, ``flows/params.py``); a second CLI library would mean two of everything.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from importlib import import_module, metadata

# subcommand → (module whose main(argv) runs it, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "backfill": ("flows.backfill", "daily or intraday bars of your tickers or universe, any range"),
    "etf-backfill": ("flows.etf_backfill", "daily bars of SPY and the 11 sector SPDRs"),
    "staggered-backfill": ("flows.staggered_sector_backfill", "the 11 sector SPDRs one at a time, minutes apart"),
    "daily-pipeline": ("flows.daily_pipeline", "the five-stage pipeline, or some of its stages"),
    "event-valuation": ("flows.event_valuation", "import events and value them"),
    "event-report": ("flows.event_report", "the event study of the valued events"),
    "jsonl-ingest": ("flows.jsonl_ingest", "load the observer's JSONL files"),
    "status": ("flows.backfill_status", "coverage: what is stored, missing and due (backfill-status)"),
    "prefect-local": ("flows.prefect_local", "Prefect's server on the project's PostgreSQL"),
    "info": ("flows.info", "where the data lives, the database, the Prefect API, the settings in force"),
    "db": ("flows.info", "the embedded PostgreSQL: db status | start | stop"),
}
ALIASES = {"backfill-status": "status"}

USAGE = "market-backfill [--version] [-h] COMMAND [ARGS ...]"
EXIT_CODES = ("Exit codes: 0 done; 1 finished with some items failed (or gaps, for status); 2 bad usage or input, nothing "
              "written; 75 stopped by a rate limit, resume later; 130 interrupted.")


def version() -> str:
    try:
        return metadata.version("market-backfill")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def help_text() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [f"usage: {USAGE}", "", "Backfill market data into PostgreSQL without tripping the source's rate limits.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "market-backfill COMMAND --help shows a command's flags and examples.", "",
              "example:", "  market-backfill backfill --tickers AAPL,MSFT --start 2015-01-01 --dry-run", "", EXIT_CODES]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(help_text())
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        print(f"market-backfill {version()}")
        return 0
    name = ALIASES.get(args[0], args[0])
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, [*COMMANDS, *ALIASES], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"usage: {USAGE}\nmarket-backfill: error: unknown command {args[0]!r}{hint} (market-backfill --help lists them)",
              file=sys.stderr)
        return 2
    module, _ = COMMANDS[name]
    entry = import_module(module)
    run = entry.db_main if name == "db" else entry.main
    return int(run(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
