"""Fixtures come from plugin modules: the database (fix_db) and the fake Yahoo (fix_yahoo)."""

pytest_plugins = ["test.fix_db", "test.fix_yahoo"]


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "slow: starts Prefect or runs many subprocesses")
    config.addinivalue_line("markers", "reliability: failure-injection tests (run alone with -m reliability)")
