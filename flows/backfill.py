"""Backfill what the user names: any tickers or universe, any range of NYSE sessions, daily or intraday bars.

    backfill --tickers AAPL,MSFT --start 2015-01-01          (python -m flows.backfill)
    backfill --universe watchlist.txt --days 20
    backfill --universe spdr:XLK --start 2024-01-01 --end 2024-12-31
    backfill --universe sp500 --days 250 --dry-run
    backfill --universe watchlist.txt --interval 1d,1m --days 5

Daily bars go to ``stock_daily_bars`` (``--table etf``: ``etf_daily_bars``)
with the ETF backfill's rules and steps (``tasks/prices/backfill_run.py``): planned against what is
stored and the NYSE calendar, so a rerun fetches only what is missing (and re-checks the last
sessions for revisions); the 24 h cache; the one shared rate budget; a stop on 429 with the command
that resumes. Intraday bars (``--interval 1h .. 1m``) go to ``intraday_bars`` through
``tasks/prices/intraday_run.py``: planned inside Yahoo's windows in the fewest requests. The
universe is resolved first (``tasks/prices/universe.py``); with ``shards`` > 1 a deployment run fans
out over the work pool (``flows/orchestration/fan_out.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
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
    shard_text,
    source_params,
    source_settings,
    ticker_list,
)
from tasks.core.calendar import MAX_DAYS
from tasks.core.commands import Invocation, RunEnd
from tasks.core.db import open_database
from tasks.core.display import printer
from tasks.core.errors import BadInput, Outcome
from tasks.core.runs import last_unfinished_run
from tasks.core.tickers import parse_shard
from tasks.prices.backfill import Summary
from tasks.prices.backfill_run import BackfillOptions, run_backfill, summary_markdown
from tasks.prices.intraday_plan import INTRADAY
from tasks.prices.intraday_run import IntradayOptions, run_intraday
from tasks.prices.store import ETF_TABLE, STOCK_TABLE
from tasks.prices.universe import funds_of, resolve_universe, sponsor_holdings, universe_kind
from tasks.sources.budget import parse_rate
from tasks.sources.yahoo import us_listed

FLOW_NAME = "backfill"
TABLES = {"stock": STOCK_TABLE, "etf": ETF_TABLE}
INTERVALS = ("1d", "1wk", "1mo", "1h", "90m", "30m", "15m", "5m", "2m", "1m")  # Yahoo's names; 1h .. 1m are INTRADAY
HOLDINGS_RATE = "20/min"  # State Street's files, as the pipeline paces them


def universe_text(text: str) -> str:
    """``--universe``: checked where it is typed (a file is read when the run starts)."""
    import argparse

    try:
        universe_kind(text)
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--universe").lstrip(": ")) from None
    return text.strip()


def parse_intervals(text: str) -> list[str]:
    """``1d,1m``: the intervals a run collects, in that order, each once.

    Raises:
        BadInput: an interval Yahoo has not, or none.
    """
    out: list[str] = []
    for item in (i.strip() for i in text.split(",")):
        if item not in INTERVALS:
            raise BadInput(f"--interval: not one of {', '.join(INTERVALS)}: {item!r}")
        if item not in out:
            out.append(item)
    return out


def interval_text(text: str) -> str:
    """``--interval``: checked where it is typed; the normalized list."""
    import argparse

    try:
        return ",".join(parse_intervals(text))
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--interval: ")) from None


PARAMS = [
    Param("tickers", None, 'the tickers, comma-separated, e.g. "AAPL,MSFT"', annotation=list[str] | None, type=ticker_list),
    Param("universe", None, "instead of --tickers: a file (one ticker a line, or a CSV with a 'ticker' column), spdr:FUND "
          "(a Select Sector SPDR fund's holdings, e.g. spdr:XLK) or sp500 (the 11 funds' holdings)", annotation=str | None,
          type=universe_text, metavar="FILE|spdr:FUND|sp500"),
    Param("start", None, "first day, YYYY-MM-DD (or --days)", annotation=str | None, type=date_text),
    Param("end", None, "last day, YYYY-MM-DD (default: the last closed NYSE session)", annotation=str | None, type=date_text),
    Param("days", None, "instead of --start: the last N NYSE sessions up to --end", annotation=int | None, type=int_in(1, MAX_DAYS)),
    Param("interval", "1d", "bar size, Yahoo's names: 1d daily (1wk, 1mo: the daily bars, weekly and monthly in views of them); "
          "1h, 90m, 30m, 15m, 5m, 2m, 1m intraday (Yahoo serves 1h for 730 days back, 2m-90m for 60, 1m for 30); several "
          "comma-separated, collected in turn, e.g. 1d,1m", type=interval_text, metavar="1d|1wk|1mo|1h|90m|30m|15m|5m|2m|1m[,...]",
          listed=True),
    Param("prepost", False, "intraday: pre- and post-market bars too (default: regular hours)", annotation=bool, action="store_true"),
    Param("shard", None, "only this share of the tickers, K/N (a stable hash of the name: the N shards never overlap and hold "
          "every ticker; one per machine, or what a fan-out gives each run)", annotation=str | None, type=shard_text, metavar="K/N"),
    Param("shards", 1, "in a deployment run: submit N runs of this deployment to the work pool, shard 1/N to N/N, wait for "
          "them and sum them up", annotation=int, type=int_in(1, 64), cli=False),
    Param("table", "stock", f"where daily bars go: stock ({STOCK_TABLE}) or etf ({ETF_TABLE})", choices=tuple(TABLES)),
    *source_params(delay=1.0, delay_help="seconds between network requests"),
    Param("batch", True, "one request per ticker instead of a batched download", annotation=bool, flag="--no-batch",
          action="store_false"),
    Param("repair", False, "yfinance's price repair of what is fetched (100x unit mix-ups, missing dividend adjustments, bad "
          "splits; its extra requests paced by the budget like the rest); a bar it changed has repaired = true", annotation=bool,
          action="store_true"),
    Param("resume", False, "continue the last backfill that did not finish (stopped, rate limited, crashed) with its own flags",
          annotation=bool, action="store_true"),
    *invocation_params("backfill", had_command=True),
    DRY_RUN, ORCHESTRATE,
]


# What a run fetches: --resume takes these from the interrupted run and refuses them given again.
RUN_SHAPING = {"tickers", "universe", "start", "end", "days", "interval", "prepost", "shard", "table", "batch", "repair"}


def resumed(values: dict[str, Any]) -> dict[str, Any]:
    """With ``resume``: the values of the last backfill that did not finish, read back from the
    command it recorded (the flags after the program's name), its command kept for the hints; the
    settings given now that do not shape what is fetched (cache, rate, delay, ...) apply.

    Raises:
        BadInput: other flags given with it, or nothing to resume.
    """
    if not values.get("resume"):
        return values
    shaped = [p.option for p in PARAMS if p.name in RUN_SHAPING and values.get(p.name, p.default) != p.default]
    if shaped:
        raise BadInput(f"--resume uses the interrupted run's own flags; drop {' '.join(shaped)}")
    conn = open_database(data_dsn())
    try:
        record = last_unfinished_run(conn, FLOW_NAME)
    finally:
        conn.close()
    if record is None:
        raise BadInput("nothing to resume: the last backfill finished (or none has run); start a new one")
    recorded = Invocation.of_line(record.command, (FLOW_NAME, "flows.backfill"))
    again = COMMAND.values(build_parser().parse_args(recorded.args), recorded)
    here = {p.name: values[p.name] for p in PARAMS if p.flow and p.cli and p.name not in RUN_SHAPING and p.name != "resume"
            and values.get(p.name, p.default) != p.default}  # this machine's settings (cache, rate, ...) given now
    printer(None)(f"Resuming backfill run {record.run_id} ({record.status}): {record.command}")
    return {**again, **here, "dry_run": values.get("dry_run", False)}


def options(values: dict[str, Any]) -> list[BackfillOptions | IntradayOptions]:
    """The run's options from flags or flow parameters (one path for both); a universe is resolved
    now (a SPDR fund's holdings file read from the cache or downloaded through its budget).

    Raises:
        BadInput: no tickers, both or neither of start and days, an unusable universe.
        RateLimited: State Street answered 429 for a holdings file.
    """
    dry_run = bool(values.get("dry_run", False))
    settings = dataclasses.replace(source_settings(values), repair=bool(values.get("repair", False)))
    start = as_date(values["start"], "start")
    days = None if values["days"] is None else int(values["days"])
    if (start is None) == (days is None):
        raise BadInput("give the range as --start YYYY-MM-DD or --days N (one of them)")
    tickers = None if values["tickers"] is None else list(values["tickers"])
    universe = values["universe"]
    if universe is not None and funds_of(universe):
        with sponsor_holdings(settings, data_dsn(), url=holdings_url(), per_min=parse_rate(HOLDINGS_RATE), dry_run=dry_run) as funds:
            chosen = resolve_universe(tickers, universe, fund_holdings=funds)
    else:
        chosen = resolve_universe(tickers, universe, fund_holdings=lambda fund: [])
    if values.get("shard"):
        share = parse_shard(str(values["shard"]))
        chosen = [t for t in chosen if share.takes(t)]
    intervals = parse_intervals(str(values["interval"]))
    intraday = set(intervals) & set(INTRADAY)
    if values["prepost"] and not intraday:
        raise BadInput("--prepost is for intraday bars (--interval 1h .. 1m)")
    foreign = [t for t in chosen if not us_listed(t)]
    if foreign and intraday:
        raise BadInput(f"intraday bars are planned on NYSE sessions and hours, which are not those of {', '.join(foreign[:5])}"
                       f"{' and more' if len(foreign) > 5 else ''}: use --interval 1d for listings outside the US")
    end = as_date(values["end"], "end")
    out: list[BackfillOptions | IntradayOptions] = []
    for interval in intervals:
        if interval in INTRADAY:
            out.append(IntradayOptions(tickers=tuple(chosen), interval=interval, start_date=start, days=days, end_date=end,
                                       prepost=bool(values["prepost"]), dry_run=dry_run, run_name=FLOW_NAME, source=settings))
        elif not any(isinstance(o, BackfillOptions) for o in out):  # 1d, 1wk, 1mo: the daily bars (weekly, monthly: views of them)
            out.append(BackfillOptions(tickers=tuple(chosen), days=days, start_date=start, end_date=end, batch=bool(values["batch"]),
                                       dry_run=dry_run, table=TABLES[str(values["table"])], source=settings, run_name=FLOW_NAME,
                                       title="Backfill"))
    return out


def run(plans: list[BackfillOptions | IntradayOptions], *, command: str, **wiring: Any) -> RunEnd:
    """Each interval in turn: daily bars through the ETF backfill's steps, intraday bars through
    their own. A rate limit stops the run (the resume command covers every interval: those done are
    skipped as stored); the outcome is the worst of them, the summary all tickers' of all intervals."""
    worst, merged = Outcome.DONE, Summary()
    if plans and not plans[0].tickers:  # a shard whose share of a small universe is empty
        printer(wiring.get("log"))("No ticker falls to this shard: nothing to do")
        return RunEnd(Outcome.DONE, detail=merged)
    dsn = data_dsn()  # resolved once for every interval (the embedded server is started at most once)
    resume = None
    for opts in plans:
        if isinstance(opts, IntradayOptions):
            end = run_intraday(opts, dsn=dsn, command=command, **wiring)
        else:
            end = run_backfill(opts, dsn=dsn, command=command, **wiring)
        if end.detail is not None:
            merged.outcomes += end.detail.outcomes
            merged.rate_limited = end.detail.rate_limited
        if end.code != Outcome.DONE:
            worst = end.code
        if end.code == Outcome.RATE_LIMITED:
            resume = end.resume
            break
    return RunEnd(worst, resume, None if plans and plans[0].dry_run else merged)


def build_flow() -> Any:
    """The Prefect flow (built on demand so plain runs never import Prefect)."""
    from prefect import flow

    from flows.orchestration.glue import prefect_task, run_in_flow

    def body(values: dict[str, Any]) -> Any:
        command = invocation(PARAMS, values).command
        if int(values.get("shards") or 1) > 1:  # each shard resolves the universe and plans its own share
            from flows.orchestration.fan_out import fan_out

            return run_in_flow(FLOW_NAME, "Backfill over shards", lambda log, _: fan_out(values, log))
        def backfill(log: Any, progress: Any) -> RunEnd:
            given = resumed(values)
            return run(options(given), command=invocation(PARAMS, given).command, wrap=prefect_task, log=log,
                       progress=progress)

        return run_in_flow(FLOW_NAME, "Backfill", backfill,
                           markdown=lambda summary, code: summary_markdown(summary, code, command, "Backfill"))

    return flow(name=FLOW_NAME, log_prints=False, validate_parameters=False)(flow_function(FLOW_NAME, PARAMS, body, __doc__))


EXAMPLES = (  # shown by --help as typed; a test parses each
    "backfill --tickers AAPL,MSFT --start 2024-01-02",
    "backfill --universe sp500 --days 20 --interval 5m --dry-run",
    "backfill --universe watchlist.txt --days 5 --interval 1d,1m",
    "backfill --resume",
)


COMMAND = FlowCommand("flows.backfill", "backfill", PARAMS, "Backfill daily or intraday bars of the tickers you name (or a universe) "
                      "over any range of NYSE sessions into PostgreSQL, paced by the shared rate budget; a rerun fetches only what is "
                      "missing.", EXAMPLES, build_flow)
build_parser = COMMAND.parser


def main(argv: Sequence[str] | None = None) -> int:
    typed: list[str] = []  # what continues the run (a resumed run's own command)

    def plain(ns: argparse.Namespace, values: dict[str, Any], call: Invocation) -> int:
        given = resumed({**values, "dry_run": ns.dry_run})
        typed[:] = [invocation(PARAMS, given).command]
        return run(options(given), command=typed[0]).code

    return COMMAND.main(argv, plain=plain,
                        interrupted=lambda call: lambda: "Interrupted: every ticker and request stored so far is kept. Continue with:"
                                                         f"\n  {typed[0] if typed else call.command}")


if __name__ == "__main__":
    sys.exit(main())
