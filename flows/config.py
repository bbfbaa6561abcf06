"""The settings: every environment variable the commands read, the configuration file, where each
setting comes from (the environment, else the file, else the default; flags override all three
where a command has one), and what a run takes from them (the data home, the database, the cache).

The file is TOML, ``market-backfill.toml`` in the data home or the file ``BACKFILL_CONFIG`` names,
with the settings under ``[settings]`` by their environment names, e.g.::

    [settings]
    YAHOO_RATE = "120/min,4000/h"
    BACKFILL_CACHE_DIR = "/srv/market/cache"

The file is read once per process, when a setting is first asked for. ``BACKFILL_HOME`` and
``BACKFILL_CONFIG`` cannot be set in it (they say where it is).

This module is the only one that touches the process environment (a test holds every other module
to it): ``Environment`` names every variable the commands read, Prefect's included;
``process_environment`` and ``export`` copy it for a child process and set what Prefect's own
client reads.
"""

from __future__ import annotations

import functools
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.core.db import DEFAULT_PGDATA, dsn_or_start_embedded
from tasks.core.errors import BadInput
from tasks.core.pg_tcp import check_listen, platform_listen
from tasks.core.processes import check_start_method, platform_start_method

CHECKOUT = Path(__file__).resolve().parent.parent
FILE_NAME = "market-backfill.toml"
NOT_IN_FILE = {"BACKFILL_HOME", "BACKFILL_CONFIG"}
# What the file may set: the settings the commands read through ``setting`` (a test keeps the two equal).
IN_FILE = frozenset({"DATABASE_URL", "BACKFILL_PGDATA", "BACKFILL_CACHE_DIR", "BACKFILL_PREFECT_HOME", "BACKFILL_PG_LISTEN",
                     "BACKFILL_ORCHESTRATE", "BACKFILL_START_METHOD", "BACKFILL_HOST", "YAHOO_RATE", "FMP_API_KEY", "FMP_BASE_URL",
                     "SSGA_HOLDINGS_URL"})


class Environment(BaseSettings):
    """Every environment variable the commands read, by its name; an empty one counts as unset.
    Values stay text: each is checked where it is used, with a message naming it."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore")

    # where things are (docs/settings.md)
    BACKFILL_HOME: str | None = None
    BACKFILL_CONFIG: str | None = None
    DATABASE_URL: str | None = None
    BACKFILL_PGDATA: str | None = None
    BACKFILL_PG_LISTEN: str | None = None
    BACKFILL_CACHE_DIR: str | None = None
    BACKFILL_PREFECT_HOME: str | None = None
    BACKFILL_HOST: str | None = None
    # how runs go
    BACKFILL_ORCHESTRATE: str | None = None
    BACKFILL_START_METHOD: str | None = None
    YAHOO_RATE: str | None = None
    FMP_API_KEY: str | None = None
    FMP_BASE_URL: str | None = None
    SSGA_HOLDINGS_URL: str | None = None
    # unattended runs: alerts, crash detection, continuations (flows/orchestration/automations.py, flows/orchestration/glue.py)
    BACKFILL_ALERT_URL: str | None = None
    BACKFILL_CRASH_AFTER_S: str | None = None
    BACKFILL_LATE_ALERT_S: str | None = None
    BACKFILL_MAX_CONSECUTIVE_STOPS: str | None = None
    # Prefect's own, read here (Prefect reads them too; never from the file)
    PREFECT_API_URL: str | None = None
    PREFECT_API_AUTH_STRING: str | None = None
    PREFECT_API_DATABASE_CONNECTION_URL: str | None = None
    PREFECT_SERVER_API_PORT: str | None = None
    PREFECT_UI_URL: str | None = None
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY: str | None = None
    # uv's, set in a process `uv run` started
    UV_RUN_RECURSION_DEPTH: str | None = None


def environment() -> Environment:
    """The environment as it is now (Prefect's variables change during a run: ``export``), read by
    pydantic-settings once for each state of its variables (a read costs ~6 ms, and a command asks
    for settings dozens of times)."""
    return _read_environment(tuple(os.environ.get(name) for name in Environment.model_fields))


@functools.lru_cache(maxsize=16)
def _read_environment(values: tuple[str | None, ...]) -> Environment:
    """``Environment()`` for the variables' ``values`` (the cache's key: they are what it reads)."""
    return Environment()


def env(name: str) -> str | None:
    """One variable of ``Environment`` as it is now, None when unset or empty."""
    value = getattr(environment(), name)
    return str(value) if value is not None else None


def process_environment() -> dict[str, str]:
    """A copy of this process's whole environment, for a child process (Prefect's server)."""
    return dict(os.environ)


def export(values: Mapping[str, str]) -> None:
    """Set ``values`` in this process's environment: what Prefect's client (and our child
    processes) read, e.g. the local server's API URL and secret."""
    os.environ.update(values)


def data_home() -> Path:
    """Where the data lives when nothing else is said: ``BACKFILL_HOME``, else the checkout these
    commands run from (so ``cd elsewhere && uv run --project ... backfill-status`` finds the same
    database instead of making an empty one there), else, for an installed package, the per-user
    data folder."""
    given = (env("BACKFILL_HOME") or "").strip()
    if given:
        return Path(given).expanduser().resolve()
    if (CHECKOUT / "pyproject.toml").is_file():
        return CHECKOUT
    import platformdirs

    return Path(platformdirs.user_data_dir("market-backfill", appauthor=False))


def config_path() -> Path:
    given = (env("BACKFILL_CONFIG") or "").strip()
    return Path(given).expanduser() if given else data_home() / FILE_NAME


@functools.cache
def _file_settings(path: Path) -> dict[str, str]:
    """The ``[settings]`` of the configuration file at ``path`` (none when there is no file).

    Raises:
        BadInput: the file is not TOML, or a setting is not text, a number or true/false, or cannot be set there.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if (env("BACKFILL_CONFIG") or "").strip():
            raise BadInput(f"BACKFILL_CONFIG: no such file: {path}") from None
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"configuration file {path}: {exc}") from None
    table = data.get("settings", {})
    if not isinstance(table, dict):
        raise BadInput(f"configuration file {path}: [settings] must be a table")
    out: dict[str, str] = {}
    for key, value in table.items():
        if key in NOT_IN_FILE:
            raise BadInput(f"configuration file {path}: {key} cannot be set in the file it locates")
        if key not in IN_FILE:  # silently ignored, it would look set (info said "from the configuration file")
            raise BadInput(f"configuration file {path}: {unknown_setting(key)}")
        if isinstance(value, bool):
            value = "true" if value else "false"
        if not isinstance(value, (str, int, float)):
            raise BadInput(f"configuration file {path}: {key} must be text, a number or true/false")
        out[str(key)] = str(value)
    return out


def unknown_setting(key: str) -> str:
    """Why ``key`` is not a setting of the file: Prefect's own, or a typo (the closest name said)."""
    if key.startswith("PREFECT_"):
        return f"{key} is Prefect's own setting, which Prefect reads from the environment only: set it there"
    import difflib

    close = difflib.get_close_matches(key, sorted(IN_FILE), n=1)
    return (f"{key} is not a setting" + (f"; did you mean {close[0]}?" if close else "")
            + f" (the file takes {', '.join(sorted(IN_FILE))})")


def setting(name: str) -> str | None:
    """A setting's value: the environment's, else the configuration file's, else None (the default)."""
    value = env(name)
    if value is not None:
        return value
    if name in NOT_IN_FILE:
        return None
    return _file_settings(config_path()).get(name)


def source_of(name: str) -> str:
    """Where ``setting(name)`` comes from: environment, configuration file, or default."""
    if env(name):
        return "environment"
    if name not in NOT_IN_FILE and name in _file_settings(config_path()):
        return f"configuration file {config_path()}"
    return "default"


# -- what a run takes from the settings ----------------------------------------------------------
# Read where a run starts (a command's ``main`` or a flow's entry) and passed down as values: no
# module under ``tasks/`` reads the environment.
#
# - ``BACKFILL_HOME``: the data home, where the embedded database (``.pgdata``), the download cache
#   (``.cache``) and the local Prefect server's home (``.prefect``) live unless each is set on its own;
#   default: the checkout the commands run from (whatever the current folder), else the per-user data
#   folder (an installed package has no checkout).
# - ``DATABASE_URL``: the data database; without it, the embedded PostgreSQL in ``BACKFILL_PGDATA``
#   (default ``.pgdata`` in the data home), started if it is not running.
# - ``YAHOO_RATE``: the Yahoo budget's rate when no flag or parameter sets it (``flows/params.py``).
# - ``FMP_API_KEY``, ``FMP_BASE_URL``: Financial Modeling Prep, for valuation multiples.
# - ``SSGA_HOLDINGS_URL``: where State Street's daily holdings files are (a mirror, a test fake).
# - ``BACKFILL_CACHE_DIR``: the download cache when ``--cache-dir`` is not given (default ``.cache``
#   in the data home).
# - ``BACKFILL_START_METHOD``: how the valuation and JSONL worker processes start (``fork``,
#   ``spawn``, ``forkserver``); default ``fork`` where the platform has it, else ``spawn`` (Windows).
#   ``spawn`` on Linux runs the Windows path.


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
