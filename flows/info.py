"""``market-backfill info`` and ``market-backfill db status|start|stop``: where the data lives and
what is in force, and the embedded PostgreSQL by hand (it otherwise starts with the first command
that needs it and keeps running).

``info`` reads only: it starts nothing and never shows a password (``describe_dsn``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flows.cli import ArgumentParser, run_as_command
from flows.config import config_path, data_home, default_cache_dir, env, pg_listen, pgdata, setting, source_of
from tasks.core.errors import Outcome

# The settings the commands read from the environment (flows/config.py, flows/params.py), and
# what each is when it is not set.
SETTINGS: dict[str, str] = {
    "BACKFILL_HOME": "the checkout these commands come from",
    "DATABASE_URL": "the embedded PostgreSQL in BACKFILL_PGDATA",
    "BACKFILL_PGDATA": ".pgdata in the data home",
    "BACKFILL_CACHE_DIR": ".cache in the data home",
    "BACKFILL_PREFECT_HOME": ".prefect in the data home",
    "BACKFILL_PG_LISTEN": "socket (tcp on Windows)",
    "BACKFILL_ORCHESTRATE": "auto (prefect when PREFECT_API_URL is set)",
    "BACKFILL_START_METHOD": "fork (spawn on Windows)",
    "BACKFILL_HOST": "the host's name",
    "YAHOO_RATE": "60/min,2000/h (the source document's limits)",
    "PREFECT_API_URL": "none: runs without Prefect, or prefect-local's server with --orchestrate prefect",
    "FMP_API_KEY": "none: no valuation multiples",
    "FMP_BASE_URL": "FMP's own address",
    "SSGA_HOLDINGS_URL": "State Street's own address",
}
SECRET = {"FMP_API_KEY", "PREFECT_API_AUTH_STRING"}


def server_state(data: Path) -> dict[str, Any]:
    """Whether the embedded PostgreSQL of ``data`` runs: its process id, and where it listens."""
    import psutil

    try:
        lines = (data / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return {"running": False}
    if not psutil.pid_exists(pid):
        return {"running": False, "note": "a postmaster.pid of a server that is gone"}
    return {"running": True, "pid": pid, "port": lines[3] if len(lines) > 3 else None,
            "socket_dir": lines[4] if len(lines) > 4 else None}


def describe() -> dict[str, Any]:
    """What ``info`` shows: nothing is started, no password is shown."""
    from flows.orchestration.server import default_home, read_info
    from tasks.core.db import describe_dsn

    url = setting("DATABASE_URL")
    data = pgdata()
    local = read_info(default_home())
    return {
        "data_home": str(data_home()),
        "database": describe_dsn(url) if url else f"embedded PostgreSQL in {data.resolve()}",
        "embedded_server": server_state(data) if not url else {"running": None, "note": "DATABASE_URL names another server"},
        "cache": str(default_cache_dir().resolve()),
        "prefect_api": env("PREFECT_API_URL") or (f"{local.api_url} (prefect-local, running)" if local else "none"),
        "config_file": f"{config_path()}" + ("" if config_path().is_file() else " (none)"),
        "settings": {name: {"value": shown_value(name, default), "from": source_of(name)} for name, default in SETTINGS.items()},
    }


def shown_value(name: str, default: str) -> str:
    """A setting as ``info`` shows it: never a secret, never a database password."""
    from tasks.core.db import describe_dsn

    value = setting(name)
    if not value:
        return default
    if name in SECRET:
        return "(set)"
    return describe_dsn(value) if name == "DATABASE_URL" else value


INFO_EXAMPLES = (  # shown by --help as typed; a test parses each
    "market-backfill info",
    "market-backfill info --json",
)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="market-backfill info", examples=INFO_EXAMPLES,
                            description="Where the data lives, the database (never its password), "
                            "whether the embedded server runs, the Prefect API, and every setting with where it came from.")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    return parser


DB_EXAMPLES = (  # shown by --help as typed; a test parses each
    "market-backfill db status",
    "market-backfill db stop",
)


def build_db_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="market-backfill db", examples=DB_EXAMPLES,
                            description="The embedded PostgreSQL (BACKFILL_PGDATA, else .pgdata in "
                            "the data home): status, start it, or stop it (the next command that needs it starts it again).")
    parser.add_argument("action", choices=("status", "start", "stop"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``market-backfill info [--json]``."""
    args = list(sys.argv[1:] if argv is None else argv)

    def body() -> Outcome:
        ns = build_parser().parse_args(args)
        shown = describe()
        if ns.json:
            print(json.dumps(shown, indent=2))
            return Outcome.DONE
        server = shown["embedded_server"]
        running = ("running" + (f" (pid {server['pid']})" if server.get("pid") else "")) if server.get("running") else (
            server.get("note") or "not running")
        print(f"data home:       {shown['data_home']}")
        print(f"database:        {shown['database']}")
        print(f"embedded server: {running}")
        print(f"download cache:  {shown['cache']}")
        print(f"Prefect API:     {shown['prefect_api']}")
        print(f"config file:     {shown['config_file']}")
        print("settings:")
        width = max(len(n) for n in SETTINGS)
        for name, said in shown["settings"].items():
            print(f"  {name:<{width}}  {said['value']}  ({said['from']})")
        return Outcome.DONE

    return run_as_command(body)


def db_main(argv: Sequence[str] | None = None) -> int:
    """``market-backfill db status|start|stop``: the embedded PostgreSQL of the data home."""
    args = list(sys.argv[1:] if argv is None else argv)

    def body() -> Outcome:
        ns = build_db_parser().parse_args(args)
        data = pgdata()
        state = server_state(data)
        if ns.action == "start" and not state["running"]:
            from tasks.core.db import embedded_dsn

            embedded_dsn(data, pg_listen())
            state = server_state(data)
        elif ns.action == "stop" and state["running"]:
            from tasks.core.db import stop_embedded_server

            stop_embedded_server(data)
            state = server_state(data)
        where = f"{data.resolve()}"
        if state["running"]:
            print(f"embedded PostgreSQL in {where}: running (pid {state['pid']}"
                  + (f", port {state['port']}" if state.get("port") and state["port"] != "5432" else "") + ")")
        else:
            print(f"embedded PostgreSQL in {where}: not running" + ("" if (data / "PG_VERSION").exists() else " (not made yet)"))
        return Outcome.DONE

    return run_as_command(body)


if __name__ == "__main__":
    sys.exit(main())
