"""Event valuation: ~137,000 events over ~5,000 tickers in minutes, not 76 hours.

    python -m flows.event_valuation --import-csv events.csv      (console script: event-valuation)

Steps (``tasks/events/run.py``): import the CSV (validated whole) → plan the pending events by
ticker, in tens of groups → the SPY benchmark → value every group (its tickers' bars fetched once:
database, cache, network; metrics in bulk; one COPY + one UPDATE) in worker processes, or as
``value-group`` Prefect tasks on a bounded thread pool → the FMP multiples phase → the summary.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from flows.cli import int_in, rate_per_min
from flows.command import FlowCommand
from flows.config import data_dsn, fmp_base_url, fmp_key, start_method
from flows.params import (
    DRY_RUN,
    ORCHESTRATE,
    Param,
    as_date,
    date_text,
    flow_function,
    invocation,
    invocation_params,
    path_text,
    rate_text,
    shard_text,
    source_params,
    source_settings,
    ticker_list,
)
from tasks.core.commands import Invocation, RunEnd
from tasks.core.errors import BadInput, Outcome, PipelineError, StoreError
from tasks.core.tickers import parse_shard, parse_ticker_list
from tasks.events.fundamentals_run import MODES as FUNDAMENTAL_MODES
from tasks.events.fundamentals_run import FundamentalsOptions
from tasks.events.groups import ValuationContext, ValuationGroup, value_group
from tasks.events.report import study_markdown
from tasks.events.run import PROCESS_THRESHOLD, ValuationOptions, run_valuation
from tasks.events.workers import GroupOutcome
from tasks.sources.fmp import DEFAULT_BASE_URL, FREE_DAILY_LIMIT

FLOW_NAME = "event-valuation"
MODULE = "flows.event_valuation"
PARAMS = [
    Param("import_csv", None, "load events (ticker,event_time,source) before valuing; re-importing adds nothing", annotation=str | None,
          type=path_text, metavar="FILE"),
    Param("skip_bad_rows", False, "import the good rows of a file with bad ones (listed; exit code 1) instead of rejecting it",
          annotation=bool, action="store_true"),
    Param("import_only", False, "import and stop (no valuation)", annotation=bool, action="store_true"),
    Param("overwrite", False, "revalue every event, not only pending ones", annotation=bool, action="store_true"),
    Param("tickers", None, "comma-separated tickers to value (default: all with pending events)", annotation=list[str] | None,
          type=ticker_list),
    Param("shard", None, "value only this share of the tickers with events, K/N (a stable hash of the name: the N shards "
          "never overlap and hold every ticker; one per machine, or what a fan-out gives each run)", annotation=str | None,
          type=shard_text, metavar="K/N"),
    Param("shards", 1, "in a deployment run: submit N runs of this deployment to the work pool, shard 1/N to N/N, wait for "
          "them and sum them up (after any import, which this run does)", annotation=int, type=int_in(1, 64), cli=False),
    Param("concurrency", 10, "ticker groups in flight at once", annotation=int, type=int_in(1, 64)),
    Param("processes", None, "worker processes sharing the --concurrency threads (default: one per core; on platforms without "
          f"fork, only when at least {PROCESS_THRESHOLD} tickers need the network)", annotation=int | None, type=int_in(1, 64),
          flow=False),
    Param("group_size", None, "tickers per group (default: about 40 groups per run)", annotation=int | None, type=int_in(1, 100_000)),
    Param("as_of", None, "value with bars up to this session only (default: the last closed NYSE session)",
          annotation=str | None, type=date_text, flag="--end", renamed_from=("--as-of",), metavar="YYYY-MM-DD"),
    *source_params(delay=0.1),
    Param("fundamentals", "auto", "fmp: also write market_cap, pe_ttm, ps_ttm from Financial Modeling Prep (needs FMP_API_KEY); "
          "auto: when FMP_API_KEY is set", choices=FUNDAMENTAL_MODES),
    Param("fmp_daily_limit", FREE_DAILY_LIMIT, "FMP requests allowed per UTC day, shared by every run (the free plan's)", annotation=int,
          type=int_in(1, 10_000_000)),
    Param("fmp_rate", "60/min", "FMP request rate, shared by every run", type=rate_text, metavar="N/UNIT"),
    *invocation_params("event-valuation", had_command=True),
    DRY_RUN, ORCHESTRATE,
]


def options(values: dict[str, Any]) -> ValuationOptions:
    """The run's options from flags or flow parameters (one path for both)."""
    source = source_settings(values)
    if values["fundamentals"] not in FUNDAMENTAL_MODES:
        raise BadInput(f"fundamentals must be one of {', '.join(FUNDAMENTAL_MODES)}: {values['fundamentals']!r}")
    return ValuationOptions(
        import_csv=Path(values["import_csv"]) if values["import_csv"] else None, skip_bad_rows=bool(values["skip_bad_rows"]),
        import_only=bool(values["import_only"]), overwrite=bool(values["overwrite"]),
        tickers=tuple(parse_ticker_list(values["tickers"])) if values["tickers"] is not None else None,
        shard=parse_shard(values["shard"]) if values.get("shard") else None,
        dry_run=bool(values.get("dry_run", False)), concurrency=int(values["concurrency"]), processes=values.get("processes"),
        start_method=start_method(), group_size=values["group_size"], as_of=as_date(values["as_of"], "as_of"), source=source,
        fundamentals=FundamentalsOptions(mode=values["fundamentals"], daily_limit=int(values["fmp_daily_limit"]),
                                         rate_per_min=rate_per_min(str(values["fmp_rate"])), cooldown_s=source.rate_limit_sleep,
                                         key=fmp_key(), base_url=fmp_base_url() or DEFAULT_BASE_URL),
    )


def prefect_mapper(concurrency: int) -> Callable[..., Iterator[GroupOutcome]]:
    """Map groups as ``value-group`` Prefect tasks (retried twice on database errors) on a thread
    pool of this run's ``concurrency`` (made per run: a deployment's parameter is what it uses)."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE
    from prefect.futures import as_completed
    from prefect.task_runners import ThreadPoolTaskRunner

    def only_store_errors(_task: Any, _run: Any, state: Any) -> bool:
        try:
            state.result()
        except StoreError:
            return True
        except Exception:
            return False
        return False

    value_task = task(name="value-group", cache_policy=NO_CACHE, persist_result=False, retries=2, retry_delay_seconds=1,
                      retry_condition_fn=only_store_errors)(value_group)

    def mapper(groups: list[ValuationGroup], ctx: ValuationContext, _: int) -> Iterator[GroupOutcome]:
        ctx = replace(ctx, fetch_threads=concurrency)
        runner: Any = ThreadPoolTaskRunner(max_workers=concurrency)
        with runner:
            futures: dict[Any, ValuationGroup] = {runner.submit(value_task, {"group": g, "ctx": ctx}): g for g in groups}
            for future in as_completed(list(futures)):
                try:
                    yield future.result()
                except PipelineError as exc:
                    yield futures[future].index, str(exc)

    return mapper


def build_flow() -> Any:
    """The Prefect flow; with ``shards`` > 1 (a deployment run) it fans out over the work pool (``fan_out.py``)."""
    from prefect import flow, get_run_logger

    from flows.orchestration.artifacts import RunArtifacts
    from flows.orchestration.glue import run_in_flow

    def body(values: dict[str, Any]) -> Any:
        opts = options(values)
        command, dsn = invocation(PARAMS, values).command, data_dsn()  # the data database, resolved once for the run
        if int(values.get("shards") or 1) > 1:
            state = run_in_flow(FLOW_NAME, "Event valuation over shards",
                                lambda log, _: fan_out_after_import(opts, values, dsn, command, log))
        else:
            state = run_in_flow(FLOW_NAME, "Event valuation",
                                lambda log, progress: run_valuation(opts, dsn=dsn, command=command, log=log, progress=progress,
                                                                    mapper=prefect_mapper(opts.concurrency)))
        if not state.is_cancelled() and opts.shard is None:  # the study of every valued event, as `event-report` prints it
            artifacts = RunArtifacts(get_run_logger())
            artifacts.markdown("event-study", study_markdown(dsn),
                               "Event study: excess returns and CAAR per event source")
            artifacts.finish()
        return state

    return flow(name=FLOW_NAME, validate_parameters=False, log_prints=False)(flow_function(FLOW_NAME, PARAMS, body, __doc__))


def fan_out_after_import(opts: ValuationOptions, values: dict[str, Any], dsn: str, command: str,
                         log: Callable[[str], None]) -> Outcome | RunEnd:
    """The parent of a fan-out: import the events file (if any) once, then the shards value them."""
    from flows.orchestration.fan_out import fan_out

    if opts.import_csv is not None:
        imported = run_valuation(replace(opts, import_only=True), dsn=dsn, command=command, log=log)
        if imported.code != Outcome.DONE:
            return imported
    return fan_out(values, log, done={"import_csv": None, "import_only": False})  # the import is done


EXAMPLES = (  # shown by --help as typed; a test parses each
    "event-valuation --import-csv examples/events.csv",
    "event-valuation --dry-run",
    "event-valuation --overwrite --tickers AAPL,MSFT --end 2025-06-30",
)


COMMAND = FlowCommand(MODULE, "event-valuation", PARAMS, "Import events and value them: returns, excess returns, momentum, "
                      "volatility.", EXAMPLES, build_flow)
build_parser = COMMAND.parser


def main(argv: Sequence[str] | None = None) -> int:
    def plain(ns: argparse.Namespace, values: dict[str, Any], call: Invocation) -> Outcome:
        opts = options({**values, "dry_run": ns.dry_run, "processes": ns.processes})
        return run_valuation(opts, dsn=data_dsn(), command=call.command).code

    return COMMAND.main(argv, plain=plain,
                        interrupted=lambda call: "Interrupted: groups already written are kept. Run the same command again to value"
                                                 f" the rest:\n  {call.command}")


if __name__ == "__main__":
    sys.exit(main())
