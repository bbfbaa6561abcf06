"""Bulk JSONL ingestion: swing bars, scalp ticks and gaps into PostgreSQL, plus 1-minute bars.

    jsonl-ingest --root DIR                                   (DIR/swing, DIR/scalp, DIR/system)
    jsonl-ingest --swing config/observer/swing --scalp config/observer/scalp --gaps 'logs/system/gap_*.jsonl'
    jsonl-ingest --root DIR --follow --poll 2                 (live, beside the writer, until Ctrl+C)

Steps (``tasks/jsonl/ingest.py``): find the files (``tasks/jsonl/files.py``) → plan each against its
checkpoint (skip, new, append, reload) → load the file groups over ``--concurrency`` worker
processes (orchestrated too), each file in
batches that commit with its checkpoint → the summary (rejects, reloads, failures).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows.cli import float_in, int_in
from flows.command import FlowCommand
from flows.config import data_dsn, host_name, start_method
from flows.params import DRY_RUN, ORCHESTRATE, Param, flow_function, path_text
from tasks.core.commands import Invocation
from tasks.core.errors import BadInput
from tasks.jsonl.files import Sources
from tasks.jsonl.ingest import run_ingest
from tasks.jsonl.options import DB_RETRIES, IngestOptions
from tasks.jsonl.split import SPLIT_MB

FLOW_NAME = "jsonl-ingest"


MODULE = "flows.jsonl_ingest"
PARAMS = [
    Param("root", None, "a folder holding swing/, scalp/ and system/ (searched recursively)", annotation=str | None, type=path_text,
          metavar="DIR"),
    Param("swing", None, "swing files: a folder (searched recursively) or a glob; replaces ROOT/swing", annotation=str | None,
          type=path_text, metavar="PATH"),
    Param("scalp", None, "scalp files: a folder or a glob; replaces ROOT/scalp", annotation=str | None, type=path_text, metavar="PATH"),
    Param("gaps", None, "gap logs: a folder or a glob such as 'logs/system/gap_*.jsonl'; replaces ROOT/system", annotation=str | None,
          type=path_text, metavar="PATH"),
    Param("follow", False, "keep running: every --poll seconds load what the files grew by and any new file; Ctrl+C or SIGTERM "
          "stops (exit 0; what is committed stays)", annotation=bool, action="store_true"),
    Param("poll", 5.0, "seconds between two passes with --follow", annotation=float, type=float_in(0.05, 86_400), metavar="SECONDS"),
    Param("fail_on_low_coverage", False, "exit 1 when what the run loaded has minutes below 0.8 coverage or critical gaps "
          "(>= 60 s)", annotation=bool, action="store_true"),
    Param("db_retries", DB_RETRIES, "retries of a file after a transient database failure (connection lost, server restart, "
          "serialization failure), from its checkpoint, with exponential backoff (1 s, 2 s, 4 s, ...)", annotation=int,
          type=int_in(0, 20)),
    Param("concurrency", 4, "loader processes (file groups, or pieces of a big file, loaded at once)", annotation=int,
          type=int_in(1, 64)),
    Param("split_mb", SPLIT_MB, "a scalp file with more than this many MB to load is cut into pieces loaded at once, as many "
          "as --concurrency and the CPU cores allow (0: never)", annotation=float, type=float_in(0, 1 << 20, "MB"), metavar="MB"),
    Param("batch_size", 10_000, "lines per COPY batch and transaction", annotation=int, type=int_in(100, 1_000_000)),
    DRY_RUN, ORCHESTRATE,
]


def options(values: dict[str, Any]) -> IngestOptions:
    sources = Sources(Path(values["root"]) if values.get("root") else None, values.get("swing"), values.get("scalp"), values.get("gaps"))
    return IngestOptions(sources, concurrency=int(values["concurrency"]), batch_size=int(values["batch_size"]),
                         dry_run=bool(values.get("dry_run", False)), fail_on_low_coverage=bool(values.get("fail_on_low_coverage")),
                         db_retries=int(values.get("db_retries", DB_RETRIES)), follow=bool(values.get("follow")),
                         poll=float(values.get("poll", 5.0)), split_mb=float(values.get("split_mb", SPLIT_MB)),
                         start_method=start_method(), host=host_name())


def build_flow() -> Any:
    """The Prefect flow. It loads in worker processes as a plain run does (``--concurrency`` of them,
    as the run's parameter says): parsing JSON is CPU work, and threads in one process would share
    one core."""
    from prefect import flow

    from flows.orchestration.glue import run_in_flow

    def body(values: dict[str, Any]) -> Any:
        opts = options(values)
        return run_in_flow(FLOW_NAME, "JSONL ingestion", lambda log, progress: run_ingest(opts, dsn=data_dsn(), log=log,
                                                                                          progress=progress))

    return flow(name=FLOW_NAME, validate_parameters=False, log_prints=False)(flow_function(FLOW_NAME, PARAMS, body, __doc__))


EXAMPLES = (  # shown by --help as typed; a test parses each
    "jsonl-ingest --root data/observer",
    "jsonl-ingest --root data/observer --follow",
    "jsonl-ingest --root data/observer --dry-run",
)


COMMAND = FlowCommand(MODULE, "jsonl-ingest", PARAMS, "Load swing, scalp and gap JSONL files into PostgreSQL: from --root DIR, or "
                      "from --swing/--scalp/--gaps (folders or globs).", EXAMPLES, build_flow)
build_parser = COMMAND.parser


def _values(ns: argparse.Namespace, call: Invocation) -> dict[str, Any]:
    if not ns.follow and any(a == "--poll" or a.startswith("--poll=") for a in call.args):
        raise BadInput("--poll sets the seconds between passes of --follow; without --follow there is one pass")
    return COMMAND.values(ns, call)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(
        argv, values=_values, plain=lambda ns, values, call: run_ingest(options({**values, "dry_run": ns.dry_run}), dsn=data_dsn()).code,
        interrupted=lambda call: f"Interrupted: committed batches are kept. Run the same command to continue:\n  {call.command}")


if __name__ == "__main__":
    sys.exit(main())
