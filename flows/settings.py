"""What a run takes from the environment (or the configuration file, ``flows/config.py``), read once
where the run starts (a command's ``main`` or a flow's entry) and passed down as values: no module under ``tasks/`` reads ``os.environ``.

- ``BACKFILL_HOME``: the data home, where the embedded database (``.pgdata``), the download cache
  (``.cache``) and the local Prefect server's home (``.prefect``) live unless each is set on its own;
  default: the checkout the commands run from (whatever the current folder), else the per-user data
  folder (an installed package has no checkout).
- ``DATABASE_URL``: the data database; without it, the embedded PostgreSQL in ``BACKFILL_PGDATA``
  (default ``.pgdata`` in the data home), started if it is not running.
- ``YAHOO_RATE``: the Yahoo budget's rate when no flag or parameter sets it (``flows/params.py``).
- ``FMP_API_KEY``, ``FMP_BASE_URL``: Financial Modeling Prep, for valuation multiples.
- ``SSGA_HOLDINGS_URL``: where State Street's daily holdings files are (a mirror, a test fake).
- ``BACKFILL_CACHE_DIR``: the download cache when ``--cache-dir`` is not given (default ``.cache``
  in the data home).
- ``BACKFILL_START_METHOD``: how the valuation and JSONL worker processes start (``fork``,
  ``spawn``, ``forkserver``); default ``fork`` where the platform has it, else ``spawn`` (Windows).
  ``spawn`` on Linux runs the Windows path.
"""

from __future__ import annotations

import socket
from pathlib import Path

from flows.config import data_home, setting
from tasks.core.db import DEFAULT_PGDATA, dsn_or_start_embedded
from tasks.core.pg_tcp import check_listen, platform_listen
from tasks.core.processes import check_start_method, platform_start_method


def pgdata() -> Path:
    """The embedded server's data directory: ``BACKFILL_PGDATA`` (relative: to the current folder),
    else ``.pgdata`` in the data home."""
    given = setting("BACKFILL_PGDATA")
    return Path(given) if given else data_home() / DEFAULT_PGDATA


def data_dsn() -> str:
    """The data database: ``DATABASE_URL``, else the embedded server's (started now if needed).

    Raises:
        StoreError: the embedded server could not be started.
    """
    return dsn_or_start_embedded(setting("DATABASE_URL") or None, pgdata(), pg_listen())


def default_cache_dir() -> Path:
    """The download cache when no flag or parameter names one: ``BACKFILL_CACHE_DIR``, else ``.cache``
    in the data home."""
    given = setting("BACKFILL_CACHE_DIR")
    return Path(given) if given else data_home() / ".cache"


def fmp_key() -> str | None:
    return (setting("FMP_API_KEY") or "").strip() or None


def fmp_base_url() -> str | None:
    return setting("FMP_BASE_URL") or None


def holdings_url() -> str | None:
    return setting("SSGA_HOLDINGS_URL") or None


def start_method() -> str:
    """How worker processes start: ``BACKFILL_START_METHOD`` or the platform's default.

    Raises:
        BadInput: a method this platform does not have.
    """
    chosen = (setting("BACKFILL_START_METHOD") or "").strip()
    return check_start_method(chosen) if chosen else platform_start_method()


def host_name() -> str:
    """The name JSONL files' origins record for this machine: ``BACKFILL_HOST`` (for a container,
    whose own name changes with each one) or the host's name."""
    return (setting("BACKFILL_HOST") or "").strip() or socket.gethostname()


def pg_listen() -> str:
    """How the embedded PostgreSQL listens: ``BACKFILL_PG_LISTEN`` (``socket`` or ``tcp``: 127.0.0.1
    with a password), else the platform's way (TCP on Windows, a Unix socket elsewhere).

    Raises:
        BadInput: another value.
    """
    chosen = (setting("BACKFILL_PG_LISTEN") or "").strip()
    return check_listen(chosen) if chosen else platform_listen()
