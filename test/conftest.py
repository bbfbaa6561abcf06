"""Fixtures come from plugin modules: the database (fix_db), the fake Yahoo (fix_yahoo), Prefect's
server (fix_prefect), a webhook receiver (webhook)."""

import os
import signal

pytest_plugins = ["test.fix_db", "test.fix_yahoo", "test.fix_prefect", "test.fix_deploy", "test.webhook"]

# Commands that tests start as processes (signals, kill -9, Prefect runs, one run of each), like a
# user's Python, keep compiled bytecode: where the environment says not to (this sandbox does), every
# one of those processes would compile pandas, yfinance and Prefect again (about a second each).
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


# Files whose tests use the test process's own Prefect server (prefect_api: a server start and
# `prefect deploy --all`, 20-35 s of CPU) run as one unit on one test process, instead of every
# process starting a server for one or two of them; the two-workers test (a pool of its own) shares
# the wiring tests' server. The .bat tests too: each test process that ran one made a wine prefix of
# its own (15-20 s each). (xdist's own `--dist loadgroup` groups nothing under pytest 9, whose nodes
# keep their id elsewhere.)
UNITS = {"test/test_deploy_cli.py": "deploy-cli", "test/test_continuations.py": "continuations",
         "test/test_prefect_wiring.py": "wiring", "test/test_workers.py": "wiring", "test/test_windows_bat.py": "windows"}


def pytest_xdist_make_scheduler(config, log):  # type: ignore[no-untyped-def]
    """xdist's scope scheduling with those units and every other test as its own: the units go out
    biggest first, then the single tests in collection order (slow first), each to the next test
    process that is free."""
    from xdist.scheduler import LoadScopeScheduling

    class Scheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return UNITS.get(nodeid.split("::", 1)[0], nodeid)

    return Scheduling(config, log)


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "slow: starts Prefect or runs many subprocesses")
    config.addinivalue_line("markers", "empty_database: the test's database (dsn) is brand-new and empty, as a first run finds it")
    config.addinivalue_line("markers", "reliability: failure-injection tests (run alone with -m reliability)")
