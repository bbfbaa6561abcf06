"""Runs valuation groups on every core: worker processes, each with a bounded thread pool.

Fetching is I/O-bound (threads overlap the waits) but yfinance's parsing and our metric code
are CPU-bound under the GIL; processes spread that over the cores. Groups are handed out from a
shared queue (the next free thread takes the next group), so a slow group never idles a core.
A 429 in any process sets a shared stop flag: no new group starts anywhere.

On Linux workers are forked (the parent has no other threads then and has closed its database
connection); elsewhere they are spawned. Each process builds its own source; its spacing is
``delay x processes`` so the aggregate request rate stays what ``--delay`` allows, and all of them
take their slots from the one shared rate budget. Workers die with the parent, even on ``kill -9``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from tasks.core.errors import PipelineError, StoreError
from tasks.core.processes import die_with_parent, leave_signals_to_the_parent, platform_start_method
from tasks.core.retries import retrying
from tasks.events.groups import GroupResult, ValuationContext, ValuationGroup, value_group

GroupOutcome = GroupResult | tuple[int, str]  # a result, or (group index, error) for a failed group
_DONE = "done"


def value_with_retries(group: ValuationGroup, ctx: ValuationContext, retries: int = 2) -> GroupOutcome:
    """A group, retried on database errors (a retry rewrites the whole group or nothing)."""
    try:
        return retrying(StoreError, attempts=retries + 1, initial=0.5, most=2.0)(value_group, group, ctx)
    except PipelineError as exc:  # the database error after the last attempt, or the group's own
        return group.index, str(exc)
    except Exception as exc:  # a bug must not hang the pool: report it as that group's failure
        return group.index, f"{type(exc).__name__}: {exc}"


def _worker(todo: Any, results: Any, stop: Any, ctx: ValuationContext, threads: int) -> None:
    """Process body: ``threads`` threads take groups from ``todo`` until it is empty or ``stop`` is set."""
    import warnings

    die_with_parent()
    leave_signals_to_the_parent()
    warnings.simplefilter("ignore")

    def loop() -> None:
        # Block for the next group: a queue's items reach the pipe through a feeder thread, so
        # "empty right now" does not mean "no more groups"; one None per thread ends the work.
        while not stop.is_set():
            group = todo.get()
            if group is None:
                return
            outcome = value_with_retries(group, ctx)
            if isinstance(outcome, GroupResult) and outcome.rate_limited is not None:
                stop.set()
            results.put(outcome)

    pool = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put(_DONE)


def _warm_up() -> None:
    from tasks.core.calendar import nyse
    from tasks.events.metrics import close_table

    nyse()
    close_table()


def worker_processes(processes: int | None, concurrency: int, groups: int) -> int:
    """How many processes a run of ``groups`` groups starts: never more than its threads or groups."""
    return max(1, min(processes or os.cpu_count() or 1, concurrency, groups))


def process_mapper(groups: list[ValuationGroup], ctx: ValuationContext, concurrency: int,
                   processes: int | None = None, start_method: str | None = None) -> Iterator[GroupOutcome]:
    """Yield each group's outcome as it finishes (see module doc)."""
    procs = worker_processes(processes, concurrency, len(groups))
    if procs == 1:
        yield from thread_mapper(groups, ctx, concurrency)
        return
    spawn: Any = mp.get_context(start_method or platform_start_method())
    if spawn.get_start_method() == "fork":
        _warm_up()  # children inherit the built calendar tables instead of building their own
    todo, results, stop = spawn.Queue(), spawn.Queue(), spawn.Event()
    threads = math.ceil(concurrency / procs)
    for group in [*groups, *[None] * (procs * threads)]:
        todo.put(group)
    settings = ctx.source_settings
    if settings is not None:
        ctx = replace(ctx, source_settings=settings.spread_over(procs))
    ctx = replace(ctx, fetch_threads=threads)
    workers = [spawn.Process(target=_worker, args=(todo, results, stop, ctx, threads), daemon=True) for _ in range(procs)]
    for w in workers:
        w.start()
    seen: set[int] = set()
    limited = False
    finished = 0
    try:
        while finished < procs:
            try:
                item = results.get(timeout=1.0)
            except queue.Empty:
                if all(not w.is_alive() for w in workers):
                    break  # a worker died without saying so: handled below
                continue
            if item == _DONE:
                finished += 1
                continue
            seen.add(item.index if isinstance(item, GroupResult) else item[0])
            limited = limited or (isinstance(item, GroupResult) and item.rate_limited is not None)
            yield item
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=5)
            if w.is_alive():
                w.terminate()
    if not limited:  # after a rate limit, unstarted groups simply stay pending
        codes = sorted({w.exitcode for w in workers if w.exitcode not in (0, None)}, key=str)
        why = f" (exit code {', '.join(map(str, codes))})" if codes else ""
        for group in groups:
            if group.index not in seen:
                yield group.index, f"not run: its worker process ended unexpectedly{why}"


def thread_mapper(groups: list[ValuationGroup], ctx: ValuationContext, concurrency: int) -> Iterator[GroupOutcome]:
    """One process: a bounded thread pool; yield outcomes as they finish."""
    import concurrent.futures as cf

    stop = threading.Event()
    ctx = replace(ctx, fetch_threads=concurrency)

    def run(group: ValuationGroup) -> GroupOutcome | None:
        if stop.is_set():
            return None
        outcome = value_with_retries(group, ctx)
        if isinstance(outcome, GroupResult) and outcome.rate_limited is not None:
            stop.set()
        return outcome

    with cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="value-group") as pool:
        futures = [pool.submit(run, g) for g in groups]
        for future in cf.as_completed(futures):
            outcome = future.result()
            if outcome is not None:
                yield outcome
