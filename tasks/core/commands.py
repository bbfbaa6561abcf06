"""The commands a run prints so the user can continue it: command lines, resume hints and the
resume time they carry (read back by the Prefect glue to schedule a continuation)."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Callable, Sequence
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


RESUME_AT = re.compile(r"Resume after (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


def parse_resume_at(lines: Sequence[str]) -> dt.datetime | None:
    """The resume time a run printed with ``resume_hint`` (the last one), if any."""
    found = [m.group(1) for line in lines for m in RESUME_AT.finditer(line)]
    return dt.datetime.strptime(found[-1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC) if found else None


def resume_hint(error: RateLimited, sleep_s: float, command: str, *, now: dt.datetime | None = None) -> str:
    """The lines printed when a rate limit stops a run: when to resume, and how."""
    wait = error.retry_after if error.from_budget and error.retry_after is not None else max(sleep_s, error.retry_after or 0.0)
    now = now or dt.datetime.now(dt.UTC)
    at = (now + dt.timedelta(seconds=wait)).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"Rate limited: {error.reason} ({error.symbol}). Everything fetched so far is committed.\n"
        f"Resume after {at} (in {wait:.0f} s) with:\n  {command}"
    )
