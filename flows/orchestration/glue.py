"""What the flows share with Prefect: task wrapping, artifacts, the run's final state, continuations.

A flow's return value does not set its state, so every flow ends with ``final_state``: the state
a user sees in the UI says what happened, and its data is the run's ``Outcome`` (the CLI maps it).

    DONE          all done                  Completed
    SOME_FAILED   some items failed         Failed       (message: how many and which)
    BAD_INPUT     bad input                 Failed "BadInput"
    RATE_LIMITED  rate limit / daily quota  Cancelled "RateLimited" (message: the resume time); in a
                                       deployment run a continuation is scheduled at that time,
                                       at most one pending per deployment
                                       and parameter set (shard); after
                                       MAX_CONSECUTIVE_STOPS stops in a row (env
                                       BACKFILL_MAX_CONSECUTIVE_STOPS): Failed "RateLimited"
    (busy)        another run holds the DB  Cancelled "Busy": a continuation BUSY_RETRY_S later, not
                                       counted as a stop
    INTERRUPTED   interrupted / cancelled   Cancelled

Imported only where Prefect runs: plain runs never import Prefect.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, TypeVar

from flows.config import env
from flows.orchestration.artifacts import RunArtifacts
from tasks.core.commands import ResumePoint, RunEnd
from tasks.core.display import ProgressSink
from tasks.core.errors import BadInput, Busy, Outcome, PipelineError

F = TypeVar("F", bound=Callable[..., Any])
MAX_CONSECUTIVE_STOPS = 5  # stops in a row after which a deployment stops rescheduling itself (env below)
BUSY_RETRY_S = 60.0  # a run that found another holding the database tries again this much later
CONTINUATION_TAG = "continuation"
STOP_TAG = "rate-limit-stop-"  # + how many stops in a row led to this run
MAX_EARLY_WAIT_S = 600.0  # a worker's prefetch (PREFECT_WORKER_PREFETCH_SECONDS, 10 by default) is far below this


class RunEnded(Exception):
    """The data of a run's final state when it is not Completed: Prefect expects an exception there;
    ``code`` is the run's outcome (the CLI maps it to an exit code)."""

    def __init__(self, code: Outcome, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.code, str(self)))


def prefect_task(fn: F, name: str, **options: Any) -> F:
    """Wrap ``fn`` as a Prefect task; its inputs (connections, frames) are never cached or persisted."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(name=name, cache_policy=NO_CACHE, persist_result=False, **options)(fn)  # type: ignore[return-value]


PROGRESS_LINE = re.compile(r"^\[|: fetching \(|\(ETA ")  # an item's progress line: "[3/12] ...", "XLK: fetching (...) (ETA ...)"


def closing_lines(lines: list[str], count: int = 12) -> list[str]:
    """The run's closing lines (summary, failures, resume command), not every item's progress line."""
    return [line for line in lines if not PROGRESS_LINE.search(line)][-count:]


DONE_ITEM = re.compile(r"^\[(\d+)/(\d+)\] (?!.*\.\.\.)")  # "[3/12] XLF fetched (...)", not "[4/12] XLE fetching (...)..."


def interrupted_markdown(title: str, lines: list[str]) -> str:
    """The summary artifact of a stopped run: that it stopped, what it finished, and that what was
    stored is kept (the last status line alone, "downloading tickers 1-12 of 12", said none of it)."""
    done = [found for line in lines if (found := DONE_ITEM.match(line))]
    finished = (f"{len(done)} of {done[-1][2]} items finished before the stop; the last: {done[-1].string}" if done
                else "No item had finished.")
    rest = "\n".join(f"    {line}" for line in closing_lines(lines)) or "    (no output)"
    return (f"## {title} (interrupted)\n\nStopped (Ctrl+C, a cancel or a signal): every item stored before the stop is kept; "
            f"run it again to continue with the rest.\n\n{finished}\n\n{rest}\n")


def run_in_flow(name: str, title: str, body: Callable[[Callable[[str], None], ProgressSink], Outcome | RunEnd],
                markdown: Callable[[Any, Outcome], str] | None = None, *, unit: str = "items") -> Any:
    """Run ``body(log, progress)`` in a Prefect flow run, ``progress`` updating the run's progress
    artifact (percent of items done, written in the background: ``artifacts.py``); leave a markdown artifact
    (``markdown(detail, code)`` when given and ``body``'s ``RunEnd`` has a detail, else the run's
    closing lines); return the run's final state (see module doc), a continuation scheduled at the
    ``RunEnd``'s resume point in a deployment run."""
    from prefect import get_run_logger

    logger = get_run_logger()
    artifacts = RunArtifacts(logger)
    lines: list[str] = []

    def log(text: str) -> None:
        lines.append(text)
        logger.info(text)

    later = later_due_run()
    if later is not None:  # runs of a schedule that piled up while no worker ran: the latest does the work
        from prefect.states import Cancelled

        message = (f"Skipped: a later run of this schedule, {later}, is due too (they piled up while no worker ran); "
                   "it does the work, once")
        logger.info(message)
        return Cancelled(name="Superseded", message=message)
    code, result, retry_at = Outcome.INTERRUPTED, None, None
    resume: ResumePoint | None = None
    try:
        wait_for_scheduled_time(log)
        artifacts.start_progress(f"{name}-progress", f"{unit} done, %")
        answer = body(log, artifacts.progress)
        end = answer if isinstance(answer, RunEnd) else RunEnd(answer)
        code, result, resume = end.code, end.detail, end.resume
    except KeyboardInterrupt:
        code = Outcome.INTERRUPTED
    except BadInput as exc:  # a parameter the checks of its flag would have refused, found deeper
        code = Outcome.BAD_INPUT
        log(f"error: {exc}")
    except Busy as exc:  # another run holds the database: try again soon, as the CLI's exit 75 says
        code, retry_at = Outcome.RATE_LIMITED, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=BUSY_RETRY_S)
        log(f"{exc}")
    except PipelineError as exc:  # the database went away, ...: the summary and the state say so
        code = Outcome.SOME_FAILED
        log(f"error: {exc}")
    finally:
        if markdown is not None and result is not None:
            text = markdown(result, code)
        elif code == Outcome.INTERRUPTED:
            text = interrupted_markdown(title, lines)
        else:
            shown = "\n".join(f"    {line}" for line in "\n".join(closing_lines(lines)).splitlines())
            text = f"## {title} ({code.words})\n\n{shown or '    (no output)'}\n"
        artifacts.markdown(f"{name}-summary", text, f"{title}: what happened, and how to resume")
        artifacts.finish()
    if retry_at is not None:
        return final_state(code, lines, resume_at=retry_at, busy=True)
    # refused: our budget said no, the source was not asked
    return final_state(code, lines, resume_at=resume.at if resume else None, refused=bool(resume and resume.refused))


SCHEDULED_TAG = "auto-scheduled"  # what Prefect's scheduler tags the runs it creates from a cron
PILED_UP_S = 15  # a run this long past due has piled up (Prefect calls a run Late after 15 s)


def later_due_run() -> str | None:
    """In a run the scheduler created: the name of a later run of the same deployment and schedule
    that has been due for PILED_UP_S already (waiting, Late or for the deployment's concurrency slot,
    running, or done: the worker may start them in any order), else None. A worker back after a
    pause would otherwise run every piled-up run in turn against the source. A later run due only a
    moment ago is no pile-up: a schedule that fires faster than runs are picked up would otherwise
    skip every run in turn, each finding the next one due."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.runtime import deployment, flow_run

    if not deployment.id or SCHEDULED_TAG not in flow_run.tags:
        return None
    try:
        with get_client(sync_client=True) as client:
            mine = client.read_flow_run(UUID(flow_run.id))
            if mine.expected_start_time is None:
                return None
            waiting = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(str(deployment.id))])),
                flow_run_filter=FlowRunFilter(
                    tags=FlowRunFilterTags(all_=[SCHEDULED_TAG]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING,
                                                                               StateType.RUNNING, StateType.COMPLETED])),
                    expected_start_time=FlowRunFilterExpectedStartTime(
                        after_=mine.expected_start_time, before_=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=PILED_UP_S))),  # type: ignore[arg-type]
                limit=50)
    except Exception as exc:  # the API's errors, whatever client raised them: do the work rather than skip it
        from prefect import get_run_logger

        get_run_logger().warning(f"Could not look for later due runs of this schedule ({type(exc).__name__}: {exc}); running")
        return None
    later = sorted((r.expected_start_time, r.name) for r in waiting if str(r.id) != str(flow_run.id)
                   and r.expected_start_time is not None and r.expected_start_time > mine.expected_start_time
                   and dict(r.parameters) == dict(mine.parameters))
    if not later:
        return None
    due, name = later[-1]
    return f"{name} (due {due:%Y-%m-%d %H:%M:%S} UTC)"


def wait_for_scheduled_time(log: Callable[[str], None]) -> None:
    """Sleep until this run's scheduled time. A worker starts runs up to its prefetch ahead of
    their time: a continuation scheduled for the end of a cool-down would otherwise ask the budget
    a few seconds early, find it still cooling down and stop again (counted as a stop)."""
    import time

    from prefect.runtime import flow_run

    if (flow_run.scheduled_start_time - dt.datetime.now(dt.UTC)).total_seconds() <= 0:
        return
    when = last_scheduled_time(flow_run.id)  # a run moved to now (prefect-local run-now) keeps its first expected time
    left = (when - dt.datetime.now(dt.UTC)).total_seconds() if when is not None else 0.0
    if left > 0:
        log(f"Started {left:.1f} s before its scheduled time (the worker's prefetch): waiting for it")
        time.sleep(min(left, MAX_EARLY_WAIT_S))


def last_scheduled_time(run_id: str) -> dt.datetime | None:
    """The time the run's last Scheduled state named (None if the API cannot say)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    try:
        with get_client(sync_client=True) as client:
            states = client.read_flow_run_states(UUID(run_id))
    except Exception:  # the API's errors, whatever client raised them: start now rather than fail
        return None
    scheduled = sorted((s for s in states if s.type == StateType.SCHEDULED and s.state_details.scheduled_time),
                       key=lambda s: s.timestamp)
    return scheduled[-1].state_details.scheduled_time if scheduled else None


def run_flow(flow: Any, values: dict[str, Any]) -> Outcome:
    """Run ``flow`` with ``values`` from the CLI; its exit code (an interrupt is raised again, so the
    CLI prints its resume hint as in a plain run)."""
    code = exit_code(flow(**values, return_state=True))
    if code == Outcome.INTERRUPTED:
        raise KeyboardInterrupt
    return code


def final_state(code: Outcome, lines: list[str], *, resume_at: dt.datetime | None = None, busy: bool = False,
                refused: bool = False) -> Any:
    """The Prefect state for a run that ended with exit ``code`` and printed ``lines``. Its
    continuation counts as a rate-limit stop only when the source answered 429: not when ``busy``
    (another run held the database) nor when ``refused`` (our own budget was still cooling down
    from an earlier 429, or its daily quota was spent: no request was sent)."""
    from prefect.states import Cancelled, Completed, Failed

    summary = "\n".join(closing_lines(lines, 6)) or "(no output)"
    if code == Outcome.DONE:
        return Completed(message=summary, data=code)
    if code == Outcome.RATE_LIMITED:
        scheduled = (continue_at(resume_at, count_stop=not (busy or refused)) if resume_at is not None
                     else "no resume time was given")
        if scheduled is None:
            message = (f"Stopped by a rate limit {max_consecutive_stops()} times in a row: not rescheduled again, "
                       f"look at the source's limits.\n{summary}")
            return Failed(name="RateLimited", message=message, data=RunEnded(code, message))
        at = resume_at.strftime("%Y-%m-%d %H:%M:%S UTC") if resume_at else "later"
        if busy:
            name, said = "Busy", f"Stopped: another run holds the database; resume after {at}"
        elif refused:
            name, said = "CoolingDown", f"Waiting for the budget's cool-down until {at} (no request was sent; not a rate-limit stop)"
        else:
            name, said = "RateLimited", f"Stopped by a rate limit (HTTP 429); resume after {at}"
        message = f"{said} ({scheduled}).\n{summary}"
        return Cancelled(name=name, message=message, data=RunEnded(code, message))
    if code == Outcome.SOME_FAILED:
        return Failed(message=summary, data=RunEnded(code, summary))
    if code == Outcome.BAD_INPUT:
        return Failed(name="BadInput", message=summary, data=RunEnded(code, summary))
    message = f"Interrupted: what was committed is kept.\n{summary}"
    return Cancelled(message=message, data=RunEnded(code, message))


def continue_at(when: dt.datetime, *, count_stop: bool = True) -> str | None:
    """In a deployment run: schedule the same deployment with the same parameters at ``when``.

    Returns what was done (for the state message), or None when this run is the
    ``MAX_CONSECUTIVE_STOPS``-th stop in a row (nothing scheduled: the run should fail loudly).
    ``count_stop=False`` (the database was busy, the source said nothing) keeps the count.
    """
    from prefect.runtime import deployment, flow_run

    if not deployment.id:
        return "not a deployment run: rerun the command then"
    stops = (1 if count_stop else 0) + max((int(t.removeprefix(STOP_TAG)) for t in flow_run.tags if t.startswith(STOP_TAG)), default=0)
    if count_stop and stops >= max_consecutive_stops():
        return None
    pending = pending_continuation(deployment.id, dict(flow_run.parameters))
    if pending is not None:
        return f"continuation {pending} is already scheduled"
    from prefect.deployments import run_deployment

    tags = [t for t in flow_run.tags if t != CONTINUATION_TAG and not t.startswith(STOP_TAG)]
    run = run_deployment(name=deployment.id, parameters=dict(flow_run.parameters), scheduled_time=when, timeout=0,
                         as_subflow=False, tags=[*tags, CONTINUATION_TAG, *([f"{STOP_TAG}{stops}"] if stops else [])],
                         job_variables=own_job_variables())
    counted = (f"after rate-limit stop {stops} in a row (gives up at {max_consecutive_stops()})" if count_stop
               else f"not a rate-limit stop ({stops} in a row before it)")
    run_id = getattr(run, "id", "?")
    return (f"continuation {getattr(run, 'name', '?')} scheduled {counted}; its id {run_id}: to start it at once, "
            f"uv run prefect-local run-now {run_id}")


def own_job_variables() -> dict[str, Any] | None:
    """This flow run's job variables (what it was started with for the worker, e.g. an ``env`` naming
    another DATABASE_URL), for the runs it starts in its place or under it: a continuation or a shard
    must run where and as this run ran, not with the deployment's defaults."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run

    if not flow_run.id:
        return None
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run.id)).job_variables or None


def max_consecutive_stops() -> int:
    """``BACKFILL_MAX_CONSECUTIVE_STOPS`` (a positive integer) or MAX_CONSECUTIVE_STOPS."""
    try:
        return max(1, int(env("BACKFILL_MAX_CONSECUTIVE_STOPS") or MAX_CONSECUTIVE_STOPS))
    except ValueError:
        return MAX_CONSECUTIVE_STOPS


def pending_continuation(deployment_id: str, parameters: dict[str, Any]) -> str | None:
    """The name of a continuation of this deployment with these parameters (one shard's) still
    waiting to run, if any: another shard's continuation does not resume this one's tickers."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(str(deployment_id))])),
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[CONTINUATION_TAG]),
                                          state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED,
                                                                                                     StateType.PENDING]))),
            limit=200)
    return next((r.name for r in runs if dict(r.parameters) == parameters), None)


def exit_code(state: Any) -> Outcome:
    """The outcome of a flow run from its final state (the CLI edge maps it to an exit code); an
    exception the flow raised is raised again (the CLI edge maps that too)."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, RunEnded):
        return result.code
    if isinstance(result, BaseException):
        raise result
    if isinstance(result, int):
        return Outcome(result)
    return Outcome.DONE if state.is_completed() else Outcome.SOME_FAILED
