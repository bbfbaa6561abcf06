"""``prefect-local``: Prefect's server on the project's PostgreSQL, in the background.

    prefect-local start      # prints: export PREFECT_API_URL=http://127.0.0.1:4200/api
    prefect-local status
    prefect-local stop
    prefect-local automations
    prefect-local run-now RUN_ID

The server itself (start, find, stop) is ``flows/orchestration/server.py``; exit codes and errors are
``run_as_command``'s, as for every command.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from flows.cli import int_in, run_as_command
from flows.config import env, export, process_environment
from flows.orchestration.server import (
    DEFAULT_PORT,
    ServerInfo,
    auth_export_line,
    basic_auth,
    default_home,
    find_local_api,
    healthy,
    install_automations,
    no_proxy_env,
    read_info,
    start_server,
    stop_server,
)
from tasks.core.errors import BadInput, Outcome, StoreError


def run_now(run_id: str | None) -> Outcome:
    """Move the scheduled flow run ``run_id`` to now on ``$PREFECT_API_URL`` (else the local server).

    A worker of its pool then takes it exactly once, where ``prefect flow-run execute`` would run it
    a second time beside the worker that takes it at its scheduled time.

    Raises:
        BadInput: no run id, not one, no such run, or a run that is not scheduled.
        StoreError: no server, or its API failed.
    """
    import httpx

    if not run_id:
        raise BadInput("run-now needs the flow run id (prefect flow-run ls, or the continuation named in the state message)")
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise BadInput(f"not a flow run id: {run_id!r}") from None
    api = find_local_api(env("PREFECT_API_URL"))
    if not api:
        raise StoreError("no Prefect server: set PREFECT_API_URL or `prefect-local start`")
    auth = basic_auth(env("PREFECT_API_AUTH_STRING"))
    try:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10, auth=auth)
        if run.status_code == 401:
            raise StoreError(f"the Prefect API at {api} refused our credentials: set PREFECT_API_AUTH_STRING to its user:password")
        if run.status_code == 404:
            raise BadInput(f"no flow run {run_id} on {api}")
        run.raise_for_status()
        state = run.json().get("state") or {}
        if state.get("type") != "SCHEDULED":
            raise BadInput(f"flow run {run_id} is {state.get('name', 'in no state')}, not scheduled: nothing to move")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        answer = httpx.post(f"{api}/flow_runs/{run_id}/set_state", timeout=10, auth=auth, json={
            "state": {"type": "SCHEDULED", "name": state.get("name") or "Scheduled", "state_details": {"scheduled_time": now}}})
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise StoreError(f"the Prefect API at {api} failed: {exc}") from None
    print(f"Flow run {run_id} is due now: a worker of its pool takes it once.", file=sys.stderr)
    return Outcome.DONE


def print_exports(info: ServerInfo, home: Path) -> None:
    """The lines that point a shell (and the workers it starts) at the server: its URL and, read
    from its owner-only file, never printed, its secret."""
    if sys.platform == "win32":
        print(f"set PREFECT_API_URL={info.api_url}")
    else:
        print(f"export PREFECT_API_URL={info.api_url}")
    print(auth_export_line(home))


def act(ns: argparse.Namespace) -> Outcome:
    """One action of ``prefect-local``.

    Raises:
        BadInput: a run id given to an action that takes none, or no ``PREFECT_API_URL`` for automations.
        StoreError: the server could not be started, or its API failed.
    """
    if ns.run_id and ns.action != "run-now":
        raise BadInput(f"{ns.action} takes no run id: {ns.run_id!r}")
    home = default_home()
    if ns.action in ("start", "automations"):
        from flows.orchestration.automations import alert_url, crash_after_s, late_after_s

        crash_after_s(), alert_url(), late_after_s()  # their settings checked before a server starts
    if ns.action == "start":
        info, started = start_server(home, port=ns.port)
        install_automations(info.api_url)
        print(f"{'Started' if started else 'Already running'} (pid {info.pid}, log {home / 'server.log'}). Use it with:", file=sys.stderr)
        print_exports(info, home)
    elif ns.action == "run-now":
        return run_now(ns.run_id)
    elif ns.action == "automations":
        url = env("PREFECT_API_URL")
        if not url:
            raise BadInput("set PREFECT_API_URL to the server that should get the automations")
        install_automations(url)
    elif ns.action == "status":
        found = read_info(home)
        if found is None or not healthy(found, home):
            print("not running", file=sys.stderr)
            return Outcome.SOME_FAILED
        print(f"running (pid {found.pid}):", file=sys.stderr)
        print_exports(found, home)
    else:
        print("stopped" if stop_server(home) else "not running", file=sys.stderr)
    return Outcome.DONE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefect-local", allow_abbrev=False,
                                     description="Prefect's server on the project's PostgreSQL, in the background.")
    parser.add_argument("action", choices=["start", "status", "stop", "automations", "run-now"],
                        help="automations: create the crash-detection automation on $PREFECT_API_URL (start does it too); "
                             "run-now RUN_ID: move a scheduled run (a continuation) to now, for the pool's workers to take once")
    parser.add_argument("run_id", nargs="?", help="the flow run id, for run-now")
    parser.add_argument("--port", type=int_in(1, 65535), default=None,
                        help=f"port for start (default: $PREFECT_SERVER_API_PORT, else the last one, else {DEFAULT_PORT}; "
                             "a free one if taken)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)  # a bad flag: argparse's message and exit 2, as every command
    export(no_proxy_env(process_environment()))  # its server is on loopback: never through a proxy
    return run_as_command(lambda: act(ns))


if __name__ == "__main__":
    sys.exit(main())
