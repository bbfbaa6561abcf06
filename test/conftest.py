"""Fixtures come from plugin modules: the database (fix_db), the fake Yahoo (fix_yahoo), Prefect's server (fix_prefect)."""

pytest_plugins = ["test.fix_db", "test.fix_yahoo", "test.fix_prefect"]


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line("markers", "slow: starts Prefect or runs many subprocesses")
    config.addinivalue_line("markers", "reliability: failure-injection tests (run alone with -m reliability)")
