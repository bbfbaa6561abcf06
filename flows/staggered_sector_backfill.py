"""Staggered sector runner: the 11 sector ETFs one at a time, minutes apart, resumable.

    python -m flows.staggered_sector_backfill --days 20 --delay 5m --skip-existing
    (console script: staggered-backfill; Windows: 2_run_staggered.bat)

Steps (``tasks/prices/staggered_run.py``): take the database's runner lock → with ``--resume``,
the interrupted run's flags and the tickers it has not done → plan (database, cache) → one
ticker at a time, waiting only between network fetches, each ticker's rows and outcome committed
together → the summary, and the command that continues after an interrupt, a rate limit or failures.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from flows.cli import float_in, int_in
from flows.command import FlowCommand
from flows.config import data_dsn
from flows.params import (
    DRY_RUN,
    ORCHESTRATE,
    Param,
    as_date,
    as_tickers,
    date_text,
    flow_function,
    invocation,
    invocation_params,
    minutes_of_duration,
    source_params,
    source_settings,
    ticker_list,
)
from tasks.core.calendar import MAX_DAYS
from tasks.core.commands import RunEnd
from tasks.core.tickers import SECTOR_ETFS
from tasks.prices.staggered_run import RUN_SHAPING, StaggerOptions, run_order, run_staggered_backfill

FLOW_NAME = "staggered-sector-backfill"
MODULE = "flows.staggered_sector_backfill"
PARAMS = [
    Param("tickers", None, f"comma-separated tickers, run in the given order (default: {','.join(SECTOR_ETFS)})",
          annotation=list[str] | None, type=ticker_list),
    Param("start_from", None, "start at this ticker of the run order (e.g. after an interruption)", annotation=str | None,
          metavar="TICKER"),
    Param("days", 20, "NYSE trading sessions back from the end date", annotation=int, type=int_in(1, MAX_DAYS)),
    Param("end_date", None, "last session to include (default: the last closed NYSE session)", annotation=str | None,
          type=date_text, flag="--end", renamed_from=("--end-date",), metavar="YYYY-MM-DD"),
    Param("delay_minutes", 5.0, "time between two network fetches: seconds, or with a unit (90s, 5m, 1.5h) (default: 5m)",
          annotation=float, type=minutes_of_duration, flag="--delay", metavar="DURATION", renamed_from=("--delay-minutes",),
          renamed_type=float_in(0, 1440, "minutes"), as_flag=lambda minutes: f"{minutes * 60:g}"),
    Param("skip_existing", False, "skip tickers whose stored rows already cover the last N NYSE sessions", annotation=bool,
          action="store_true"),
    *source_params(delay=None),
    Param("resume", False, "continue the last interrupted run with its recorded flags", annotation=bool, action="store_true"),
    *invocation_params("staggered-backfill"),
    DRY_RUN, ORCHESTRATE,
]


def options(values: dict[str, Any]) -> StaggerOptions:
    """The run's options from flags or flow parameters (one path for both)."""
    tickers = run_order(as_tickers(values["tickers"], SECTOR_ETFS), values["start_from"])
    return StaggerOptions(tickers=tuple(tickers), days=int(values["days"]), end_date=as_date(values["end_date"], "end_date"),
                          delay_minutes=float(values["delay_minutes"]), skip_existing=bool(values["skip_existing"]),
                          dry_run=bool(values.get("dry_run", False)), source=source_settings(values, delay=0.0))


def run(values: dict[str, Any], **wiring: Any) -> RunEnd:
    # The command line given (CLI), or for a deployment run the flags of its parameter values, so
    # resume hints repeat what the run was asked (a deployment never spells out argv itself).
    resume = bool(values["resume"])
    if values["args"] is None and resume:
        # A deployment run given resume=true: the interrupted run's own parameters are used, whatever
        # the deployment's (its skip_existing=true, say) would have been.
        values = {**values, **{p.name: p.default for p in PARAMS if p.option in RUN_SHAPING}}
    call = invocation(PARAMS, values)
    return run_staggered_backfill(options(values), dsn=data_dsn(), args=list(call.args), prog=call.prog, resume=resume, **wiring)


def build_flow() -> Any:
    """The Prefect flow (built on demand so plain runs never import Prefect)."""
    from prefect import flow

    from flows.orchestration.glue import prefect_task, run_in_flow

    def body(values: dict[str, Any]) -> Any:
        return run_in_flow(FLOW_NAME, "Staggered sector backfill", lambda log, progress: run(values, log=log, wrap=prefect_task,
                                                                                                   progress=progress))

    return flow(name=FLOW_NAME, log_prints=False, validate_parameters=False)(flow_function(FLOW_NAME, PARAMS, body, __doc__))


EXAMPLES = (  # shown by --help as typed; a test parses each
    "staggered-backfill --days 20 --delay 5m --skip-existing",
    "staggered-backfill --resume",
    "staggered-backfill --tickers XLK,XLV --dry-run",
)


COMMAND = FlowCommand(MODULE, "staggered-backfill", PARAMS, "Backfill the 11 sector ETFs one ticker at a time, minutes apart, "
                      "resumably.", EXAMPLES, build_flow)
build_parser = COMMAND.parser


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(argv, plain=lambda ns, values, call: run({**values, "dry_run": ns.dry_run}).code,
                        interrupted=lambda call: "")  # the runner says what is kept and prints the command that resumes


if __name__ == "__main__":
    sys.exit(main())
