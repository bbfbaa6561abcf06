"""Measuring a rate limiter from outside: grant times of many threads and processes, and the most
grants in any window. Shared by the rate tests and the benches (never import a test_*.py module)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tasks.sources.budget import RateBudget


def grant_times(take: Callable[[], Any], count: int, threads: int) -> list[float]:
    """``threads`` threads call ``take()`` ``count`` times each; returns when each call returned."""
    def timed() -> float:
        take()
        return time.time()

    return slot_times(timed, count, threads)


def slot_times(take: Callable[[], float], count: int, threads: int) -> list[float]:
    """``threads`` threads call ``take()`` ``count`` times each; returns what each call returned (a slot's time)."""
    times: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(count):
            slot = take()
            with lock:
                times.append(slot)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return times


def grab(dsn: str, per_min: float, count: int, threads: int, out: Any) -> None:
    """Worker process: ``threads`` threads take ``count`` slots each of one budget; the slots' times, as
    the database granted them (not when the threads woke: on a loaded machine wake-ups bunch), go to ``out``."""
    budget = RateBudget(dsn, "shared", per_min=per_min)
    out.put(slot_times(lambda: granted_slot(budget), count, threads))


def granted_slot(budget: RateBudget) -> float:
    """``budget.acquire()``, returning when the slot began by the database's clock (seconds since
    1970): what a measurement of the shared rate counts, whenever the thread happened to wake."""
    wait, slot = budget._reserve()  # the reservation acquire makes, with the slot's time it does not return
    if wait > 0:
        time.sleep(wait)
    return slot


def most_in_window(times: list[float], window: float) -> int:
    """The largest number of grants within any ``window`` seconds."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
