"""The commands a run prints so the user can continue it: command lines, and the resume point a
rate-limited run returns in its ``RunEnd`` (the hint people read, the time an orchestrator
schedules a continuation at)."""

from __future__ import annotations

import datetime as dt
import io
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tasks.core.errors import BadInput, Outcome, RateLimited

F = TypeVar("F", bound=Callable[..., Any])


def plain(fn: F, name: str, **_: Any) -> F:
    """How a step runs without orchestration: the function itself (flows pass a wrapper that makes
    it a Prefect task instead)."""
    return fn


def command_line(prog: str, args: Sequence[str]) -> str:
    return f"{prog} {shlex.join(list(args))}".strip()


@dataclass(frozen=True)
class Invocation:
    """The command a run's hints repeat, the one way it is carried: the program as the user started
    it (``prog``, already a word or words of their shell: ``uv run backfill``) and its arguments."""

    args: tuple[str, ...]
    prog: str

    @property
    def command(self) -> str:
        """The whole line, quoted for the user's shell."""
        return command_line(self.prog, self.args)

    @classmethod
    def of_line(cls, line: str, names: Sequence[str]) -> Invocation:
        """A recorded command line read back: the program ends at the first word that is one of
        ``names`` (the console script, the module), after any words of its own (``uv run --project
        DIR``), and keeps its quoting; the arguments are the words after it.

        Raises:
            BadInput: the line names none of ``names``, or its quotes do not close.
        """
        stream = io.StringIO(line)
        words = shlex.shlex(stream, posix=True, punctuation_chars=False)
        words.whitespace_split = True
        try:
            while (word := words.get_token()) != words.eof:
                if word in names:
                    prog = line[:stream.tell()].rstrip()  # read up to the word's end: its quoting kept
                    return cls(tuple(words), prog)
        except ValueError as exc:
            raise BadInput(f"cannot read the recorded command {line!r}: {exc}") from None
        raise BadInput(f"the recorded command {line!r} is not one of {', '.join(names)}")


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
    """When and how a run stopped by a rate limit continues, as values: ``hint`` is the text for
    people; an orchestrator schedules a continuation at ``at`` (see ``RunEnd``)."""

    at: dt.datetime
    reason: str
    command: str
    refused: bool = False  # our budget said no before any request (see ``RateLimited.refused``)
    wait_s: float = 0.0

    def hint(self) -> str:
        """The lines printed when a rate limit stops a run: when to resume, and how."""
        at = self.at.strftime("%Y-%m-%d %H:%M:%S UTC")
        said = (f"Waiting for the budget's cool-down until {at}: {self.reason}; no request was sent."
                if self.refused else f"Rate limited: {self.reason}.")
        return (f"{said} Everything fetched so far is committed.\nResume after {at} (in {self.wait_s:.0f} s) with:\n"
                f"  {self.command}")


def resume_point(error: RateLimited, sleep_s: float, command: str, *, now: dt.datetime | None = None) -> ResumePoint:
    """Where a run that ``error`` stopped continues: after the source's (or our budget's) wait, or
    ``sleep_s``, whichever is longer, with ``command``."""
    wait = error.retry_after if error.from_budget and error.retry_after is not None else max(sleep_s, error.retry_after or 0.0)
    now = now or dt.datetime.now(dt.UTC)
    exact = now + dt.timedelta(seconds=wait)
    # Up to the next whole second, never down: a continuation (or a person) starting at the time
    # said must find the cool-down over, not a fraction of a second left of it.
    when = exact.replace(microsecond=0) + (dt.timedelta(seconds=1) if exact.microsecond else dt.timedelta())
    reason = error.reason if error.refused else f"{error.reason} ({error.symbol})"
    return ResumePoint(when, reason, command, refused=error.refused, wait_s=wait)


@dataclass(frozen=True)
class RunEnd:
    """How a run ended, as values: its exit ``code``, where it resumes when a rate limit stopped it,
    and what it did (``detail``: a summary for its report, or None)."""

    code: Outcome
    resume: ResumePoint | None = None
    detail: Any = None


def ended(detail: Any, *, failed: bool, say: Callable[[str], Any], stopped: RateLimited | None = None, sleep_s: float = 0.0,
          resume: str | Callable[[], str] = "", kept: str = "") -> RunEnd:
    """How a run ended, the one judge of every run's totals (``detail``): stopped by a rate limit, it
    says when and how to resume (the ``resume`` command, ``kept``: what the rerun keeps) and ends
    there; else it failed (exit 1: some item, line or group failed) or is done."""
    if stopped is not None:
        point = resume_point(stopped, sleep_s, resume() if callable(resume) else resume)
        say(point.hint() + kept)
        return RunEnd(Outcome.RATE_LIMITED, point, detail)
    return RunEnd(Outcome.SOME_FAILED if failed else Outcome.DONE, detail=detail)
