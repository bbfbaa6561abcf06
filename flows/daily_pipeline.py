"""The daily pipeline: five stages in order, each idempotent and each runnable alone, and retention.

    daily-pipeline                          (all five, as of the last closed NYSE session)
    daily-pipeline --stages trending,allocation --end 2025-06-30
    daily-pipeline --stages retention [--dry-run]

Steps (``tasks/pipeline/steps.py``): ``etf-ohlc`` (the ETF and benchmark backfills) →
``etf-holdings`` (every constituent, from the sponsor's files) → ``trending`` (sectors, then the top
sectors' stocks) → ``stock-history`` (every constituent) → ``allocation`` (point-in-time market-cap
weights); ``retention`` when named. In Prefect one subflow per stage (``pipeline-<stage>``), each
with its markdown artifact, and the run's progress and summary artifacts. A stage whose inputs are
missing names the stage to run first; a rate limit stops the run with the command that resumes
from that stage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from flows.cli import int_in
from flows.command import FlowCommand
from flows.config import data_dsn, holdings_url
from flows.params import (
    DRY_RUN,
    ORCHESTRATE,
    Param,
    as_date,
    date_text,
    flow_function,
    invocation,
    invocation_params,
    rate_text,
    source_params,
    source_settings,
)
from tasks.core.calendar import MAX_DAYS
from tasks.core.commands import Invocation, RunEnd
from tasks.core.display import ProgressSink, printer
from tasks.core.errors import BadInput, Outcome
from tasks.core.runs import run_dsn
from tasks.core.tickers import SECTOR_ETFS
from tasks.pipeline.options import ALL_STAGES, STAGES, PipelineOptions, StageOutcome, parse_stages
from tasks.pipeline.retention import RetentionWindows
from tasks.pipeline.stages import markdown, run_pipeline, run_stage
from tasks.sources.budget import parse_rate

FLOW_NAME = "daily-pipeline"
MODULE = "flows.daily_pipeline"


def stage_list(text: str) -> list[str]:
    try:
        return list(parse_stages(text))
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


PARAMS = [
    Param("stages", list(STAGES), f"stages to run, in order: names or numbers, e.g. 3,4 (default: all five: {', '.join(STAGES)}; "
          f"{', '.join(ALL_STAGES[len(STAGES):])} only when named)",
          annotation=list[str] | None, type=stage_list),
    Param("as_of", None, "last session: the pipeline's value date (default: the last closed NYSE session)", annotation=str | None,
          type=date_text, flag="--end", renamed_from=("--as-of",), metavar="YYYY-MM-DD"),
    Param("days", 30, "NYSE sessions of bars to keep current, at least 21", annotation=int, type=int_in(21, MAX_DAYS)),
    Param("top_sectors", 3, "sectors whose holdings form the portfolio", annotation=int, type=int_in(1, len(SECTOR_ETFS))),
    Param("holdings_rate", "20/min", "request budget for the sponsor's holdings files (its own budget, 'ssga')", type=rate_text,
          metavar="N/UNIT"),
    Param("keep_realtime_days", 30, "retention: days of ticks, 1- and 10-minute bars and gaps to keep", annotation=int,
          type=int_in(1, 100_000)),
    Param("keep_daily_days", 730, "retention: days of daily bars to keep (bars that pending event valuations need are kept)",
          annotation=int, type=int_in(1, 100_000)),
    Param("keep_log_days", 7, "retention: days of run logs, JSONL rejects and price-change logs to keep", annotation=int,
          type=int_in(1, 100_000)),
    *source_params(delay=1.0, delay_help="minimum seconds between this run's requests", refresh=False),
    *invocation_params("daily-pipeline"),
    DRY_RUN, ORCHESTRATE,
]


def options(values: dict[str, Any]) -> PipelineOptions:
    """The run's options from flags or flow parameters (one path for both)."""
    return PipelineOptions(stages=parse_stages(",".join(values["stages"] or STAGES)), as_of=as_date(values["as_of"], "as_of"),
                           days=int(values["days"]), top_sectors=int(values["top_sectors"]), dry_run=bool(values.get("dry_run", False)),
                           holdings_rate=parse_rate(str(values["holdings_rate"])), holdings_url=holdings_url(),
                           retention=RetentionWindows(int(values["keep_realtime_days"]), int(values["keep_daily_days"]),
                                                      int(values["keep_log_days"])),
                           source=source_settings(values))


def build_flow() -> Any:
    """The Prefect flow: one subflow per stage (built on demand so plain runs never import Prefect)."""
    from prefect import flow, get_run_logger

    from flows.orchestration.artifacts import RunArtifacts
    from flows.orchestration.glue import prefect_task, run_in_flow

    def stage_flow(name: str) -> Any:
        @flow(name=f"pipeline-{name}", validate_parameters=False, log_prints=False)
        def stage(params: dict[str, Any], run_id: int | None = None) -> StageOutcome:
            logger = get_run_logger()
            dsn = data_dsn()  # never a parameter: runs record those (the pipeline's run id is one)
            dsn = dsn if run_id is None else run_dsn(dsn, run_id)

            say = printer(logger.info)
            outcome = run_stage(name, options(params), dsn=dsn, say=say, wrap=prefect_task)
            artifacts = RunArtifacts(logger)
            artifacts.markdown(f"pipeline-{name}", markdown([outcome], outcome.code), f"Daily pipeline stage {name}")
            artifacts.finish()
            return outcome

        return stage

    stage_flows = {name: stage_flow(name) for name in ALL_STAGES}

    def body(values: dict[str, Any]) -> Any:
        opts = options(values)

        def pipeline(log: Callable[[str], None], progress: ProgressSink) -> RunEnd:
            done: list[str] = []

            def one(name: str, run_id: int | None) -> StageOutcome:
                outcome: StageOutcome = stage_flows[name](params=values, run_id=run_id)
                done.append(name)
                progress(len(done), len(opts.stages))  # the run's progress artifact counts stages, not their items
                return outcome

            call = invocation(PARAMS, values)
            end = run_pipeline(opts, prog=call.prog, args=call.args, say=printer(log), stage=one, dsn=data_dsn())
            # the report: the stages, and the command that runs those left (with the run's own flags)
            return replace(end, detail=(end.detail, end.resume.command if end.resume else None))

        return run_in_flow(FLOW_NAME, "Daily pipeline", pipeline, lambda result, code: markdown(result[0], code, result[1]),
                           unit="stages")

    return flow(name=FLOW_NAME, validate_parameters=False, log_prints=False)(flow_function(FLOW_NAME, PARAMS, body, __doc__))


EXAMPLES = (  # shown by --help as typed; a test parses each
    "daily-pipeline",
    "daily-pipeline --stages trending,allocation --end 2025-06-30",
    "daily-pipeline --dry-run",
)


COMMAND = FlowCommand(MODULE, "daily-pipeline", PARAMS, "ETF OHLC → ETF holdings → trending sectors and stocks → stock history → "
                      "portfolio allocation; retention when named.", EXAMPLES, build_flow)
build_parser = COMMAND.parser


def main(argv: Sequence[str] | None = None) -> int:
    def plain(ns: argparse.Namespace, values: dict[str, Any], call: Invocation) -> Outcome:
        opts = options({**values, "dry_run": ns.dry_run})
        return run_pipeline(opts, prog=call.prog, args=call.args, say=printer(), dsn=data_dsn()).code

    # the pipeline says the command that runs the stages not done yet
    return COMMAND.main(argv, plain=plain, interrupted=lambda call: "")


if __name__ == "__main__":
    sys.exit(main())
