"""Fixtures come from plugin modules: the database (fix_db), the fake Yahoo (fix_yahoo), Prefect's server (fix_prefect)."""

import os
import signal
from collections.abc import Iterator

import pytest

pytest_plugins = ["test.fix_db", "test.fix_yahoo", "test.fix_prefect"]

# The commands under test run as subprocesses, as a user runs them, and like a user's Python they keep
# compiled bytecode: where the environment says not to (this sandbox does), every one of the ~200
# processes would compile pandas, yfinance and Prefect again (about a second each).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


def pytest_collection_modifyitems(items):  # type: ignore[no-untyped-def]
    """Slow tests first (stable order otherwise): the test workers then finish on short tests
    instead of one of them starting a minute-long one while the others are done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "slow: starts Prefect or runs many subprocesses")
    config.addinivalue_line("markers", "reliability: failure-injection tests (run alone with -m reliability)")


@pytest.fixture(autouse=True)
def stop_signals_as_found() -> Iterator[None]:
    """Each test leaves Ctrl+C and SIGTERM as it found them. A command run inside this process
    (``main()``) ignores both once it has ended (``run_cli``: a late signal must not change its exit
    code), and an ignored signal is inherited: every process a later test started (a Prefect worker
    stopped with Ctrl+C, a run sent SIGTERM) would shrug it off, and the test would depend on
    which tests its worker ran before it."""
    stops = (signal.SIGINT, signal.SIGTERM)
    found = {stop: signal.getsignal(stop) for stop in stops}
    yield
    for stop, handler in found.items():
        if handler is not None:  # None: set outside Python; nothing of ours to put back
            signal.signal(stop, handler)
