"""Fixtures come from plugin modules: the database (fix_db), the fake Yahoo (fix_yahoo), Prefect's
server (fix_prefect), a webhook receiver (webhook)."""

import os
import signal

pytest_plugins = ["test.fix_db", "test.fix_yahoo", "test.fix_prefect", "test.webhook"]

# The commands under test run as subprocesses, as a user runs them, and like a user's Python they keep
# compiled bytecode: where the environment says not to (this sandbox does), every one of the ~200
# processes would compile pandas, yfinance and Prefect again (about a second each).
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Ctrl+C as a terminal gives it. A suite started in the background of a script (`pytest &`, a CI
# runner's job) inherits SIGINT ignored, and so would every command and Prefect worker the tests
# start: Prefect's worker, whose Ctrl+C handler re-sends the signal to itself under the action it
# found, then never stops; each deployment test waited 30 s for it and killed it (~270 s a run).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items):  # type: ignore[no-untyped-def]
    """Slow tests first (stable order otherwise): the test workers then finish on short tests
    instead of one of them starting a minute-long one while the others are done."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "slow: starts Prefect or runs many subprocesses")
    config.addinivalue_line("markers", "server_env(**settings): environment for the own_prefect_server fixture's server")
    config.addinivalue_line("markers", "reliability: failure-injection tests (run alone with -m reliability)")
