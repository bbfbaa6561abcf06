"""ETF benchmark backfill: SPY and the 11 sector SPDRs, daily OHLCV → ``etf_daily_bars``.

    python -m flows.etf_backfill --days 20          (console script: etf-backfill)

Steps (``tasks/prices/backfill_run.py``): plan against the database, then the 24 h cache → fetch
only the rest (one batched download, or per ticker; rate-limited, retried) → store each ticker in
one transaction with its progress record → one summary line, and with Prefect a summary artifact.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from flows.cli import int_in
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
    source_params,
    source_settings,
    ticker_list,
)
from tasks.core.calendar import MAX_DAYS
from tasks.core.tickers import ETF_UNIVERSE
from tasks.prices.backfill_run import BackfillOptions, run_backfill, summary_markdown

FLOW_NAME = "etf-backfill"
PARAMS = [
    Param("tickers", None, 'comma-separated subset, e.g. "XLK,XLV" (default: all 12)', annotation=list[str] | None, type=ticker_list),
    Param("days", 20, "NYSE trading sessions back from the end date", annotation=int, type=int_in(1, MAX_DAYS)),
    Param("end_date", None, "last session to include (default: the last closed NYSE session)", annotation=str | None,
          type=date_text, flag="--end", renamed_from=("--end-date",), metavar="YYYY-MM-DD"),
    *source_params(delay=5.0, delay_help="seconds between network requests"),
    Param("batch", True, "one request per ticker instead of a batched download", annotation=bool, flag="--no-batch",
          action="store_false"),
    *invocation_params("etf-backfill", had_command=True),
    DRY_RUN, ORCHESTRATE,
]


def options(values: dict[str, Any]) -> BackfillOptions:
    """The run's options from flags or flow parameters (one path for both)."""
    return BackfillOptions(tickers=as_tickers(values["tickers"], ETF_UNIVERSE), days=int(values["days"]),
                           end_date=as_date(values["end_date"], "end_date"), batch=bool(values["batch"]),
                           dry_run=bool(values.get("dry_run", False)), source=source_settings(values))


def build_flow() -> Any:
    """The Prefect flow (built on demand so plain runs never import Prefect)."""
    from prefect import flow

    from flows.orchestration.glue import prefect_task, run_in_flow

    def body(values: dict[str, Any]) -> Any:
        opts = options(values)
        command = invocation(PARAMS, values).command
        return run_in_flow(FLOW_NAME, "ETF backfill",
                           lambda log, progress: run_backfill(opts, dsn=data_dsn(), command=command, wrap=prefect_task, log=log,
                                                              progress=progress),
                           markdown=lambda summary, code: summary_markdown(summary, code, command))

    return flow(name=FLOW_NAME, log_prints=False, validate_parameters=False)(flow_function(FLOW_NAME, PARAMS, body, __doc__))


EXAMPLES = (  # shown by --help as typed; a test parses each
    "etf-backfill",
    "etf-backfill --tickers XLK,XLV --days 60 --dry-run",
    "etf-backfill --days 250 --delay 2s",
)


COMMAND = FlowCommand("flows.etf_backfill", "etf-backfill", PARAMS, "Backfill daily OHLCV of SPY and the 11 sector SPDR ETFs into "
                      "PostgreSQL.", EXAMPLES, build_flow)
build_parser = COMMAND.parser


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.main(
        argv,
        plain=lambda ns, values, call: run_backfill(options({**values, "dry_run": ns.dry_run}), dsn=data_dsn(), command=call.command).code,
        interrupted=lambda call: f"Interrupted: every ticker stored so far is kept. Continue with:\n  {call.command}")


if __name__ == "__main__":
    sys.exit(main())
