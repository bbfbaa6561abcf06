"""The console scripts' entry points (``pyproject.toml``): each loads its command's module with a
stop signal remembered rather than fatal, then runs the command.

A command's imports (pandas, yfinance, Prefect) take up to a second. Python's own handling would
turn a Ctrl+C in that second into a traceback, and a SIGTERM into a silent death; remembered, the
stop ends the command with its documented exit 130 before it touches anything (``run_as_command``
finds the remembered stop as the handler it replaces). Only here, when a command starts: importing
``flows`` anywhere else (a Prefect worker's flow-run process, a test) changes no signal handling.
``python -m flows.<x>`` loads its module before any of this runs; ``python -m flows <command>``
starts as the console scripts do.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from importlib import import_module
from types import FrameType


class StopsWhileStarting:
    """The signal handler while a command starts: remembers each stop (``signals``) for
    ``run_as_command`` to act on."""

    def __init__(self) -> None:
        self.signals: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)


def launch(module: str) -> int:
    """Import ``module`` with stops remembered, then return what its ``main()`` returns."""
    starting = StopsWhileStarting()
    try:
        signal.signal(signal.SIGTERM, starting)
        signal.signal(signal.SIGINT, starting)
    except ValueError:  # not the main thread: the caller handles signals
        pass
    return int(import_module(module).main())


@dataclass(frozen=True)
class Script:
    """A console script: starts ``module``'s command (``launch``)."""

    module: str

    def __call__(self) -> int:
        return launch(self.module)


market_backfill = Script("flows.market_backfill")
backfill = Script("flows.backfill")
etf_backfill = Script("flows.etf_backfill")
staggered_backfill = Script("flows.staggered_sector_backfill")
daily_pipeline = Script("flows.daily_pipeline")
event_valuation = Script("flows.event_valuation")
event_report = Script("flows.event_report")
jsonl_ingest = Script("flows.jsonl_ingest")
backfill_status = Script("flows.backfill_status")
prefect_local = Script("flows.prefect_local")
