"""An ingestion run: find the files, plan each (skip, new, append, reload), load the file groups in
worker processes, summarize (rejects, reloads, incomplete tails, failures)."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
from collections.abc import Callable, Generator
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import psycopg
from tenacity import RetryCallState

from tasks.core.commands import RunEnd, ended
from tasks.core.db import connect, database_errors, first_line, is_transient, open_database
from tasks.core.display import ProgressSink, Reporter, printer
from tasks.core.errors import Outcome, PipelineError
from tasks.core.processes import die_with_parent, leave_signals_to_the_parent
from tasks.core.retries import retrying
from tasks.core.runs import recorded_run
from tasks.jsonl.coverage import Coverage
from tasks.jsonl.files import FilePlan, absent_places, count_lines, discover, plan_files
from tasks.jsonl.load import FileResult, load_file
from tasks.jsonl.lost_days import mend_lost_days
from tasks.jsonl.options import DB_RETRIES, IngestOptions
from tasks.jsonl.origins import keyed_files
from tasks.jsonl.split import Splitter, max_pieces
from tasks.jsonl.totals import IngestTotals
from tasks.jsonl.upgrade import finish_moves, pending_moves


def group_plans(plans: list[FilePlan], groups: int) -> list[list[FilePlan]]:
    """Spread the files to load over ``groups`` lists of about equal bytes (largest first)."""
    todo = sorted((p for p in plans if p.action != "skip"), key=lambda p: -p.bytes_to_load)
    buckets: list[list[FilePlan]] = [[] for _ in range(max(1, min(groups, len(todo))))]
    sizes = [0] * len(buckets)
    for plan in todo:
        i = sizes.index(min(sizes))
        buckets[i].append(plan)
        sizes[i] += plan.bytes_to_load
    return [b for b in buckets if b]


def load_group(dsn: str, plans: list[FilePlan], batch_size: int, db_retries: int = DB_RETRIES) -> list[FileResult | tuple[str, str]]:
    """Load a group's files one after another; a failing file doesn't stop the rest.

    A transient database failure (connection lost, server restart, serialization failure) is
    retried with exponential backoff on a new connection, from the file's last checkpoint; a
    permanent one fails that file only.
    """
    out: list[FileResult | tuple[str, str]] = []
    conns: list[psycopg.Connection[Any]] = []

    def connection() -> psycopg.Connection[Any]:
        if conns and (conns[0].closed or conns[0].broken):
            conns.pop().close()
        if not conns:
            conns.append(connect(dsn, autocommit=True))
        return conns[0]

    try:
        for plan in plans:
            def before_sleep(state: RetryCallState, rel: str = plan.file.rel) -> None:
                exc = state.outcome.exception() if state.outcome else None
                print(f"{rel}: database error, retrying from its checkpoint (attempt {state.attempt_number + 1} of {db_retries + 1}):"
                      f" {str(exc).splitlines()[0] if exc else ''}", flush=True)
                if conns:
                    conns.pop().close()

            again = retrying(is_transient, attempts=db_retries + 1, initial=1.0, most=8.0, before_sleep=before_sleep)
            try:
                result = again(lambda plan=plan: load_file(connection(), plan, batch_size=batch_size))
                result.retries = again.statistics["attempt_number"] - 1
                out.append(result)
            except PipelineError as exc:
                out.append((plan.file.rel, str(exc)))
            except psycopg.Error as exc:  # outside the loader's own boundary (the file lock): still this file only
                out.append((plan.file.rel, f"database error: {first_line(exc)}"))
            except OSError as exc:  # the disk or the file system failed under this file: it fails, the others load
                out.append((plan.file.rel, f"read error: {exc.strerror or exc}"))
    finally:
        for conn in conns:
            conn.close()
    return out


def _worker_init() -> None:
    """A loader process: dies with its parent, which handles the signals (``leave_signals_to_the_parent``)."""
    die_with_parent()
    leave_signals_to_the_parent()


def pool_mapper(groups: list[list[FilePlan]], dsn: str, opts: IngestOptions) -> Generator[FileResult | tuple[str, str], None, None]:
    """Worker processes (parsing JSON is CPU work: threads would share one core), started the
    options' way (forked where the platform allows, else spawned). An interrupt (Ctrl+C, SIGTERM to the run or to its whole process
    group) stops every worker at once instead of waiting for the files still queued."""
    context = mp.get_context(opts.start_method)
    pool = cf.ProcessPoolExecutor(max_workers=opts.concurrency, mp_context=context, initializer=_worker_init)
    try:
        futures = [pool.submit(load_group, dsn, g, opts.batch_size, opts.db_retries) for g in groups]
        for future in cf.as_completed(futures):
            yield from future.result()
    except BrokenProcessPool:
        _stop_workers(pool)
        # Killed with its whole process group (SIGTERM), the run's own signal arrives a moment later
        # and turns this wait into KeyboardInterrupt: a stop. Otherwise a worker died on its own.
        time.sleep(1.0)
        raise PipelineError("a loader process ended unexpectedly; committed batches are kept: run again to continue") from None
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _stop_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (``shutdown`` alone waits for running files)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # before shutdown() forgets them; no public way < 3.14
    for proc in procs:
        proc.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.join(timeout=5)
    # The pool's manager thread closes its wake-up pipe once it sees the workers gone; at exit,
    # Python 3.11's concurrent.futures writes to that pipe unlocked and, when the two cross, prints
    # an "OSError: Bad file descriptor" traceback (fixed in 3.12 with a lock): let it finish first.
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(timeout=5)


def run_ingest(opts: IngestOptions, *, dsn: str, log: Callable[[str], Any] | None = None,
               progress: ProgressSink | None = None) -> RunEnd:
    """Plan, then load every file group; how the run ended (its totals the detail). With
    ``opts.follow``, again every ``opts.poll`` seconds until interrupted (``follow.py``).

    Raises:
        BadInput: bad sources (nothing written).
        StoreError: the database is unreachable.
    """
    say = printer(log)

    for place in absent_places(opts.sources):
        say(f"Nothing to load from {place}: it does not exist (yet)")
    said: set[str] = set()  # files left out, each said once (a follower sees them every pass)
    if opts.follow and not opts.dry_run:
        from tasks.jsonl.follow import follow

        return RunEnd(follow(opts, say=say, load=lambda: ingest_once(opts, dsn=dsn, say=say, log=log, said=said,
                                                                                         progress=progress)))
    outcome = ingest_once(opts, dsn=dsn, say=say, log=log, said=said, progress=progress)
    if outcome is None:  # a dry run: said what it would do
        return RunEnd(Outcome.DONE)
    totals, coverage = outcome
    for line in totals.lines() + coverage.lines():
        say(line)
    # failed (exit 1): a file failed, a line was rejected, or (when asked) coverage is low
    failed = totals.failed or any(r.rejected for r in totals.results) or (opts.fail_on_low_coverage and coverage.alarming)
    return ended(totals, failed=bool(failed), say=say)


def finish_upgrade(conn: psycopg.Connection[Any], *, dry_run: bool, say: Callable[[str], None]) -> None:
    """Finish moving ticks stored before day partitions into them (``upgrade.py``); a dry run says how far it is."""
    with database_errors("moving the stored ticks into day partitions failed (batches done stay done)"):
        if dry_run:
            for move in pending_moves(conn):
                say(f"First, an upgrade is {move.describe()}")
        else:
            finish_moves(conn, say)


def say_plan(plans: list[FilePlan], say: Callable[[str], None]) -> None:
    """What a dry run would load: per file its action and lines, then the total."""
    total = 0
    for plan in plans:
        lines = 0 if plan.action == "skip" else count_lines(plan.file.path, plan.start_byte if plan.action == "append" else 0)
        total += lines
        say(f"  {plan.file.rel:<32} {plan.action:<7} {lines:>10,} lines to load")
    say(f"Would load {total:,} lines from {sum(p.action != 'skip' for p in plans)} of {len(plans)} files")


def ingest_once(opts: IngestOptions, *, dsn: str, say: Callable[[str], None], log: Callable[[str], Any] | None,
                said: set[str] | None = None, progress: ProgressSink | None = None) -> tuple[IngestTotals, Coverage] | None:
    """One pass: find, plan and load the files; their totals and the coverage of what loaded (None for a dry run).
    Files left out by name are said once (``said`` remembers them across passes)."""
    left_out: dict[str, str] = {}
    files = discover(opts.sources, left_out)
    said = set() if said is None else said
    for path, why in sorted(left_out.items()):
        if path not in said:
            said.add(path)
            say(f"Left out {path}: {why}")
    conn = open_database(dsn, dry_run=opts.dry_run)
    try:
        finish_upgrade(conn, dry_run=opts.dry_run, say=say)
        with database_errors("restoring the ticks of days removed by hand failed"):
            mend_lost_days(conn, say, dry_run=opts.dry_run)
        with database_errors("recording the files' origins failed"):
            files = keyed_files(conn, files, opts.host, claim=not opts.dry_run, say=say)
        plans = plan_files(conn, files)
        if opts.dry_run:
            conn.rollback()
            say_plan(plans, say)
            return None
    finally:
        conn.close()
    totals = IngestTotals(plans)
    if not totals.to_load:
        return totals, Coverage()
    # The run the loaded rows carry (run_id): recorded only when there is something to load, so a
    # follower's empty passes leave no trace.
    with recorded_run(dsn, "jsonl-ingest", "jsonl-ingest", {"files": [p.file.rel for p in plans][:100]}) as run:
        with Splitter(run.dsn, max_pieces(opts.concurrency), opts.split_mb) as splitter:
            units = [unit for plan in plans for unit in (splitter.split(plan) if splitter.wants(plan) else [plan])]
            groups = group_plans(units, opts.concurrency * 4)
            if not opts.follow:
                say(f"Loading {len(totals.to_load)} files in up to {min(opts.concurrency, len(groups))} loader processes "
                    f"({opts.start_method})")
            reporter = Reporter(len(totals.to_load), log=log, progress=progress)
            outcomes = pool_mapper(groups, run.dsn, opts)
            try:
                for piece_or_file in outcomes:
                    outcome = splitter.arrived(piece_or_file)
                    if outcome is None:  # a piece of a file still loading
                        continue
                    if isinstance(outcome, tuple):
                        totals.failed.append(outcome)
                        reporter.item(f"{outcome[0]} failed: {outcome[1]}")
                        continue
                    totals.results.append(outcome)
                    text, eta = totals.progress()
                    reporter.status(text, eta)
                    pieces = f" in {outcome.pieces} pieces" if outcome.pieces > 1 else ""
                    reporter.item(f"{outcome.rel} {outcome.action}{pieces}: {outcome.loaded:,} rows, {outcome.rejected:,} rejected"
                                  f" ({text})")
            finally:
                # On an interrupt, close the pool's generator now (it stops its workers), not when the
                # traceback is dropped: until then the pool would go on loading every queued file. (The
                # splitter's locks go after it, as the with block ends.)
                outcomes.close()
                reporter.close()
        if totals.failed:
            run.ended(Outcome.SOME_FAILED, f"{len(totals.failed)} file(s) failed")
    return totals, totals.coverage(dsn)
