"""Prefect flows and their command lines: thin wrappers that order the work in tasks/.

Started as one of our commands, a stop signal that arrives while the heavy libraries still load
(the first second) is remembered rather than fatal: ``run_as_command`` then ends the run with the
documented "interrupted" exit (130) before it touches anything. Imported by anything else (a
Prefect worker's flow-run process, a test), signal handling is left alone.
"""

from __future__ import annotations

import os
import re
import signal
import sys

# The console scripts of pyproject.toml (a test keeps the two equal: `backfill` and `market-backfill`
# were missing, so a stop while they loaded was a traceback instead of the exit 130 it is for the rest).
COMMANDS = ("etf-backfill", "staggered-backfill", "event-valuation", "jsonl-ingest", "backfill-status", "daily-pipeline",
            "prefect-local", "event-report", "backfill", "market-backfill")
early_stop: list[int] = []  # signals received before run_as_command installed its handlers


def _started_as_a_command() -> bool:
    if not sys.argv or not sys.argv[0]:
        return False
    if sys.argv[0] == "-m":  # `python -m flows.<x>`: this package is imported while its module is located
        return True
    name = re.split(r"[\\/]", sys.argv[0])[-1].removesuffix(".exe").removesuffix("-script.py")  # / or \ (Windows)
    return name in COMMANDS or os.path.dirname(os.path.abspath(sys.argv[0])) == os.path.dirname(os.path.abspath(__file__))


def _remember(signum: int, frame: object) -> None:
    early_stop.append(signum)


if _started_as_a_command():
    try:
        signal.signal(signal.SIGTERM, _remember)
        signal.signal(signal.SIGINT, _remember)
    except ValueError:  # not the main thread
        pass
