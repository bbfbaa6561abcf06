"""The commands a run prints so the user can continue it: command lines, resume hints, and the
resume point they carry as a value (``resume_sink``: the Prefect glue schedules a continuation at it)."""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from tasks.core.errors import RateLimited

F = TypeVar("F", bound=Callable[..., Any])


def plain(fn: F, name: str, **_: Any) -> F:
    """How a step runs without orchestration: the function itself (flows pass a wrapper that makes
    it a Prefect task instead)."""
    return fn


def command_line(prog: str, args: Sequence[str]) -> str:
    return f"{prog} {shlex.join(list(args))}".strip()


def without_flags(args: Sequence[str], flags: dict[str, int]) -> list[str]:
    """``args`` minus the given flags (``{"--start-from": 1, "--resume": 0}``: name → values taken)."""
    out: list[str] = []
    skip = 0
    for arg in args:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in flags:
            skip = 0 if "=" in arg else flags[name]
            continue
        out.append(arg)
    return out


@dataclass(frozen=True)
class ResumePoint:
    """When and how a run stopped by a rate limit continues, as values (``resume_hint`` prints it)."""

    at: dt.datetime
    reason: str
    command: str
    refused: bool = False  # our budget said no before any request (see ``RateLimited.refused``)


# Where the resume points of a run go (a list an orchestrator sets for the run it wraps, e.g. to
# schedule a continuation at ``at``); the printed hint is for people, this is for programs.
resume_sink: ContextVar[list[ResumePoint] | None] = ContextVar("resume_sink", default=None)


@contextmanager
def collected_resume_points() -> Iterator[list[ResumePoint]]:
    """The resume points ``resume_hint`` gives inside the block, as a list (for an orchestrator)."""
    points: list[ResumePoint] = []
    token = resume_sink.set(points)
    try:
        yield points
    finally:
        resume_sink.reset(token)


def resume_hint(error: RateLimited, sleep_s: float, command: str, *, now: dt.datetime | None = None) -> str:
    """The lines printed when a rate limit stops a run: when to resume, and how."""
    wait = error.retry_after if error.from_budget and error.retry_after is not None else max(sleep_s, error.retry_after or 0.0)
    now = now or dt.datetime.now(dt.UTC)
    exact = now + dt.timedelta(seconds=wait)
    # Up to the next whole second, never down: a continuation (or a person) starting at the time
    # said must find the cool-down over, not a fraction of a second left of it.
    when = exact.replace(microsecond=0) + (dt.timedelta(seconds=1) if exact.microsecond else dt.timedelta())
    sink = resume_sink.get()
    if sink is not None:
        sink.append(ResumePoint(when, f"{error.reason} ({error.symbol})", command, refused=error.refused))
    at = when.strftime("%Y-%m-%d %H:%M:%S UTC")
    said = (f"Waiting for the budget's cool-down until {at}: {error.reason}; no request was sent."
            if error.refused else f"Rate limited: {error.reason} ({error.symbol}).")
    return f"{said} Everything fetched so far is committed.\nResume after {at} (in {wait:.0f} s) with:\n  {command}"
