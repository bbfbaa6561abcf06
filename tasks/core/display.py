"""Progress for people and logs: a rich bar on a terminal, plain numbered lines otherwise.

Every message also goes to ``log`` (the Prefect run logger when a flow runs), so the
Prefect UI carries the same lines as the terminal.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

# Where finished-item counts also go (done, total), given by an orchestrator to the run it wraps:
# e.g. a Prefect progress artifact's update.
ProgressSink = Callable[[int, int], Any]


_quiet = [False]  # -q: no line per item (set once by the command line, read by each Reporter)


def set_quiet(quiet: bool) -> None:
    _quiet[0] = quiet


def printer(log: Callable[[str], Any] | None = None) -> Callable[[str], None]:
    """A run's ``say``: each line to stdout (flushed: a person watches it) and, when given, to ``log``
    too (the Prefect run logger, so the UI carries the same lines)."""
    def say(text: str) -> None:
        print(text, flush=True)
        if log is not None:
            log(text)

    return say


class Reporter:
    """Counts items done and prints one line per item.

    Args:
        total: items planned.
        stream: where lines go (stdout by default).
        log: extra sink for each line (e.g. a Prefect run logger's ``info``).
        progress: where ``(done, total)`` goes as items finish (e.g. a Prefect progress artifact).
        tty: force the terminal mode on or off (default: ask the stream).
    """

    def __init__(self, total: int, *, stream: IO[str] | None = None, log: Callable[[str], Any] | None = None,
                 tty: bool | None = None, progress: ProgressSink | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stdout
        self.log = log
        self.sink = progress
        self.tty = self.stream.isatty() if tty is None else tty
        self.quiet = _quiet[0]
        self._progress: Progress | None = None
        self._task: Any = None
        if self.tty and total > 0 and not self.quiet:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[eta]}"), console=Console(file=self.stream), transient=True,
            )
            self._task = self._progress.add_task("starting", total=total, eta="")
            self._progress.start()

    def status(self, text: str, eta: str = "", *, plain: bool = False) -> None:
        """Show what is happening now: on the bar of a terminal, in the log, and with ``plain``
        also as a line when there is no terminal (for long waits a person should see)."""
        self._now(text, eta, text + (f" ({eta})" if eta else ""), plain=plain)

    def starting(self, text: str, eta: str = "") -> None:
        """The next item begins: ``[4/12] XLF fetching (2025-06-02 to 2025-06-30)... ETA ...`` as a
        line without a terminal (a log, a pipe, a scheduler's capture), on the bar with one."""
        self._now(text, eta, f"[{self.done + 1}/{self.total}] {text}..." + (f" {eta}" if eta else ""), plain=True)

    def _now(self, text: str, eta: str, line: str, *, plain: bool) -> None:
        """``text`` and ``eta`` on the bar of a terminal, else ``line`` printed when ``plain`` (and not
        -q); ``line`` to the log either way."""
        if self._progress is not None:
            self._progress.update(self._task, description=text, eta=eta)
        elif plain and self.log is None and not self.quiet:
            print(line, file=self.stream, flush=True)
        if self.log is not None:
            self.log(line)

    def item(self, text: str) -> None:
        """One item finished: ``[3/12] XLF fetched (20 rows)``."""
        self.done += 1
        line = f"[{self.done}/{self.total}] {text}"
        if not self.quiet:
            self.line(line)
        elif self.log is not None:
            self.log(line)
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done)
        if self.sink is not None:
            self.sink(self.done, self.total)

    def line(self, text: str) -> None:
        """A line that stays on screen."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        elif self.log is None:  # with a log sink (Prefect), its console handler prints the line
            print(text, file=self.stream, flush=True)
        if self.log is not None:
            self.log(text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def format_eta(seconds: float, *, now: dt.datetime | None = None) -> str:
    """``ETA 14:05:09 UTC (in 3m20s)``; beyond a year only the duration (no clock time overflows)."""
    if not seconds < 365 * 86400:
        return f"ETA in {seconds / 86400:,.0f} days" if seconds < 1e12 else "ETA: practically never"
    now = now or dt.datetime.now(dt.UTC)
    at = now + dt.timedelta(seconds=seconds)
    return f"ETA {at:%H:%M:%S} UTC (in {format_duration(seconds)})"


def format_duration(seconds: float) -> str:
    """``1h02m03s``, ``4m05s`` or ``6s``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")
