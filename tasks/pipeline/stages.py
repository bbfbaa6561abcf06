"""The daily pipeline: its stages in order, each idempotent and each runnable alone.

1. ``etf-ohlc``       SPY + 11 sector funds; SPY and QQQ       → etf_daily_bars, benchmark_daily_bars
2. ``etf-holdings``   every constituent (sponsor's daily file)   → etf_holdings
3. ``trending``       sectors, then the top sectors' stocks, vs SPY over 5/10/20 sessions
                                                                  → trending_sectors, trending_stocks
4. ``stock-history``  daily bars of every constituent           → stock_daily_bars
5. ``allocation``     point-in-time market-cap weights           → portfolio_allocation
   ``retention``      deletes rows outside their windows (only when named; its own deployment)

A stage whose stored inputs are missing says which stage to run first (exit 2), unless it is a dry
run in which an earlier stage of the same run makes them (it says what it would do); a rate limit stops
the run and prints the command that resumes from that stage (exit 75). Stages write whole as-of
dates in one transaction, so rerunning a stage gives the same rows. The bodies are in ``steps.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from tasks.core.commands import RunEnd, command_line, plain, resume_point, without_flags
from tasks.core.errors import MissingInputs, Outcome
from tasks.core.runs import recorded_run
from tasks.core.tickers import SECTOR_ETFS
from tasks.pipeline import steps
from tasks.pipeline.options import PipelineOptions, StageOutcome

RUNNERS: dict[str, Callable[..., StageOutcome]] = {
    "etf-ohlc": steps.etf_ohlc, "etf-holdings": steps.etf_holdings, "trending": steps.trending, "stock-history": steps.stock_history,
    "allocation": steps.allocation, "retention": steps.retention,
}


def planned_work(name: str, opts: PipelineOptions) -> str:
    """What a stage would do with the inputs an earlier stage of the same run stores (for dry runs)."""
    funds = f"the {len(SECTOR_ETFS)} sector funds"
    return {
        "trending": f"rank {funds} against SPY over 5/10/20 sessions on the bars stage 1 (etf-ohlc) stores, then backfill and "
                    f"rank the stocks of the top {opts.top_sectors} sectors (from the holdings stage 2 fetches)",
        "stock-history": f"backfill {opts.days} sessions of daily bars for every constituent of {funds}' holdings (fetched in "
                         "stage 2, etf-holdings)",
        "allocation": f"weight the top {opts.top_sectors} sectors' stocks by point-in-time market cap (from the ranking of stage 3 "
                      "and the history of stage 4)",
    }.get(name, "run")


def run_stage(name: str, opts: PipelineOptions, *, dsn: str, say: Callable[[str], None], wrap: Callable[..., Any] = plain,
              earlier: Sequence[str] = ()) -> StageOutcome:
    """One stage; missing inputs become an outcome (exit 2) that names the stage to run first, except
    in a dry run whose ``earlier`` stages make them: then it says what it would do with them."""
    try:
        outcome = RUNNERS[name](opts, dsn, wrap)
    except MissingInputs as exc:
        if opts.dry_run and exc.stage in earlier:
            outcome = StageOutcome(name, Outcome.DONE, [f"would {planned_work(name, opts)}; its inputs come from stage "
                                                        f"{exc.stage} of this run (not stored yet: {exc})"])
        else:
            outcome = StageOutcome(name, Outcome.BAD_INPUT, [f"cannot run: {exc}"])
    for index, line in enumerate(outcome.lines):
        if index not in outcome.said:
            say(f"[{name}] {line}")
    return outcome


def rest_command(prog: str, args: Sequence[str], rest: Sequence[str], as_of: dt.date) -> str:
    """The command that runs the stages ``rest`` as of ``as_of``, with the run's other flags."""
    again = [*without_flags(args, {"--stages": 1, "--end": 1, "--as-of": 1}), "--stages", ",".join(rest), "--end", as_of.isoformat()]
    return command_line(prog, again)


def run_pipeline(opts: PipelineOptions, *, prog: str, args: Sequence[str], say: Callable[[str], None],
                 dsn: str, stage: Callable[[str, int | None], StageOutcome] | None = None) -> RunEnd:
    """Run the chosen stages in order; stop at a rate limit, missing inputs or an interrupt. Returns
    how the run ended, the stages' outcomes as its ``detail``; interrupted, it says the command
    that runs the stages not done yet, and the stop goes on (KeyboardInterrupt).

    ``stage(name, run_id)`` runs one stage (a Prefect subflow in the flow; ``run_stage`` by default),
    its writes carrying the pipeline's ``run_id`` (``tasks/core/runs.py``; None in a dry run).
    """
    as_of = opts.session()
    left = list(opts.stages)  # the stages not done yet: the one running and those after it
    try:
        say(f"Daily pipeline as of {as_of}: {', '.join(opts.stages)}" + (" (dry run)" if opts.dry_run else ""))
        with recorded_run(dsn, "daily-pipeline", command_line(prog, args), {"stages": list(opts.stages)},
                          dry_run=opts.dry_run) as record:
            run = stage or (lambda name, _: run_stage(name, opts, dsn=record.dsn, say=say, earlier=opts.stages[:opts.stages.index(name)]))
            end = _stages(opts, as_of, prog, args, say, lambda name: run(name, record.run_id), left)
            record.ended(end.code)
            return end
    except KeyboardInterrupt:
        say(f"Interrupted: finished stages are kept. Run the unfinished stages with:\n  {rest_command(prog, args, left, as_of)}")
        raise


def _stages(opts: PipelineOptions, as_of: dt.date, prog: str, args: Sequence[str], say: Callable[[str], None],
            run: Callable[[str], StageOutcome], left: list[str]) -> RunEnd:
    """The stages in order, as of the one session the run said (a second lookup could fall on the
    other side of a close); ``left`` kept to the stages not done yet."""
    outcomes: list[StageOutcome] = []
    for name in opts.stages:
        left[:] = opts.stages[opts.stages.index(name):]
        outcome = run(name)
        outcomes.append(outcome)
        if outcome.code == Outcome.RATE_LIMITED and outcome.rate_limited is not None:
            rest = opts.stages[opts.stages.index(name):]
            point = resume_point(outcome.rate_limited, opts.source.rate_limit_sleep, rest_command(prog, args, rest, as_of))
            say(point.hint())
            return RunEnd(Outcome.RATE_LIMITED, point, outcomes)
        if outcome.code == Outcome.BAD_INPUT and not opts.dry_run:
            return RunEnd(Outcome.BAD_INPUT, detail=outcomes)
    failed = [o.stage for o in outcomes if o.code not in (Outcome.DONE,)]
    say(f"Pipeline {'checked' if opts.dry_run else 'done'}: {len(outcomes) - len(failed)} of {len(outcomes)} stage(s) ok"
        + (f"; with problems: {', '.join(failed)}" if failed else ""))
    if any(o.code == Outcome.BAD_INPUT for o in outcomes):
        return RunEnd(Outcome.BAD_INPUT, detail=outcomes)
    return RunEnd(Outcome.SOME_FAILED if failed else Outcome.DONE, detail=outcomes)


def markdown(outcomes: list[StageOutcome], code: Outcome, resume: str | None = None) -> str:
    rows = "\n".join(f"| {o.stage} | {o.code.words} | {'<br>'.join(line.replace('|', '/') for line in o.lines)} |" for o in outcomes)
    text = f"## Daily pipeline ({code.words})\n\n| stage | outcome | what happened |\n|---|---|---|\n{rows}\n"
    if resume:
        text += f"\nResume with `{resume}`.\n"
    return text
