"""Worker-process helpers shared by the process pools (event valuation, JSONL ingestion)."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from tasks.core.errors import BadInput


def platform_start_method() -> str:
    """``fork`` where the platform has it (workers start in milliseconds with everything imported),
    else ``spawn`` (Windows, macOS: each worker imports the libraries again, ~2-3 s)."""
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def check_start_method(name: str) -> str:
    """``name`` if this platform can start processes that way.

    Raises:
        BadInput: not a start method, or not one this platform has.
    """
    if name not in mp.get_all_start_methods():
        raise BadInput(f"start method {name!r} is not available here: choose one of {', '.join(mp.get_all_start_methods())}")
    return name


def die_with_parent() -> None:
    """Worker initializer: end this process when its parent dies, even by ``kill -9``, so no orphan
    keeps fetching, writing or holding a connection after the run the user stopped."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        else:
            if os.getppid() != parent:  # the parent died before the call took effect
                os._exit(1)
            return

    def watch() -> None:
        import psutil

        while psutil.pid_exists(parent) and os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def leave_signals_to_the_parent() -> None:
    """Worker initializer: Ctrl+C is the parent's to handle (it stops its workers: a unit of work in
    flight rolls back, committed ones stay), and SIGTERM ends the worker at once and quietly. Forked,
    a worker would otherwise inherit the command's handler and print a KeyboardInterrupt traceback
    from wherever it was when the whole process group got the signal."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def stops_held() -> Iterator[None]:
    """Hold a Ctrl+C or SIGTERM that arrives inside the block and deliver it when the block ends: a
    commit and what the run says of it (its count, its line) stay together, a stop between them
    would leave a stored item uncounted. For blocks of milliseconds: nothing that waits on a network.
    Only the main thread sets handlers; elsewhere the block runs as it is."""
    stops = (signal.SIGINT, signal.SIGTERM)
    before = {s: signal.getsignal(s) for s in stops}
    if threading.current_thread() is not threading.main_thread() or any(h is None for h in before.values()):
        yield
        return
    held: list[tuple[signal.Signals, Any]] = []
    for s in stops:
        signal.signal(s, lambda signum, frame: held.append((signal.Signals(signum), frame)))
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
        if held:
            signum, frame = held[0]
            handler = before[signum]
            if callable(handler):
                handler(signum, frame)  # the command's own: KeyboardInterrupt
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
