"""Prefect's server with its database in PostgreSQL, in the background, found again by every run
(its command, ``prefect-local``, is ``flows/prefect_local.py``).

Prefect's temporary server (what runs when ``PREFECT_API_URL`` is unset) keeps its state in
SQLite: it refused writes under our load ("database is locked"), and it starts for every run. This
server keeps its database in the project's embedded PostgreSQL cluster (a database of its own,
``prefect``; ``PREFECT_API_DATABASE_CONNECTION_URL`` selects another, e.g. a managed server),
runs in the background and is reused: ``--orchestrate prefect`` without ``PREFECT_API_URL`` starts
it on first use and every later run finds it through ``<home>/server.json``.

Home: ``BACKFILL_PREFECT_HOME`` or ``.prefect`` in the data home (the server's log, its Prefect home, the state file,
and ``api-auth``: the ``user:secret`` every caller of its API must send, made once and owner-only).

Only callers that send that secret are let in (Prefect's basic authentication: the server reads
``PREFECT_SERVER_API_AUTH_STRING``, clients send ``PREFECT_API_AUTH_STRING``). The project's own
commands read it from the home when they use this server; a worker is given it as
``prefect-local start`` prints (``export PREFECT_API_AUTH_STRING="$(cat .../api-auth)"``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from flows.config import env, export, pg_listen, pgdata, process_environment
from tasks.core.db import PREFECT_DBNAME, embedded_server_uri
from tasks.core.errors import BadInput, StoreError

DEFAULT_PORT = 4200
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
AUTH_FILE = "api-auth"
AUTH_USER = "market-backfill"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerInfo:
    """What ``server.json`` records about a running server."""

    pid: int
    port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def default_home() -> Path:
    """``BACKFILL_PREFECT_HOME``, else ``.prefect`` in the data home (``flows/settings.data_home``)."""
    from flows.config import data_home, setting

    given = setting("BACKFILL_PREFECT_HOME")
    return Path(given).expanduser().resolve() if given else data_home() / ".prefect"


def database_url() -> str:
    """The SQLAlchemy URL of Prefect's database: the env setting, else ``prefect`` in the embedded cluster.

    Raises:
        StoreError: the embedded server could not be started.
    """
    configured = env("PREFECT_API_DATABASE_CONNECTION_URL")
    if configured:
        return configured
    uri = embedded_server_uri(pgdata(), PREFECT_DBNAME, pg_listen())
    return "postgresql+asyncpg://" + uri.split("://", 1)[1]


def auth_string(home: Path) -> str | None:
    """The local server's ``user:secret`` from ``<home>/api-auth``, None when there is none yet."""
    try:
        return (home / AUTH_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def make_auth_string(home: Path) -> str:
    """The home's ``user:secret``, made now (random, 256 bits) if missing: written owner-only (0600)
    before it holds anything, and moved into place whole, so no reader ever sees a part of it."""
    found = auth_string(home)
    if found:
        return found
    text = f"{AUTH_USER}:{secrets.token_urlsafe(32)}"
    partial = home / f".{AUTH_FILE}.{os.getpid()}"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.replace(partial, home / AUTH_FILE)
    return text


def auth_export_line(home: Path) -> str:
    """The shell line that gives a worker or a shell the secret without printing it."""
    path = home / AUTH_FILE
    if sys.platform == "win32":
        return f'set /p PREFECT_API_AUTH_STRING=<"{path}"'
    return f'export PREFECT_API_AUTH_STRING="$(cat {shlex.quote(str(path))})"'


def use_local_server(info: ServerInfo, home: Path) -> None:
    """Point this process's Prefect client at the local server: its URL, its secret, and no proxy
    for loopback (behind a corporate proxy Prefect's websocket would go to it)."""
    export({"PREFECT_API_URL": info.api_url})
    secret = auth_string(home)
    if secret:  # this server's own, whatever another server's may be set for
        export({"PREFECT_API_AUTH_STRING": secret})
    export(no_proxy_env(process_environment()))


def no_proxy_env(env: Mapping[str, str]) -> dict[str, str]:
    """``NO_PROXY``/``no_proxy`` with the loopback addresses added (what was there is kept)."""
    out = {}
    for key in ("NO_PROXY", "no_proxy"):
        have = [h.strip() for h in (env.get(key) or "").split(",") if h.strip()]
        out[key] = ",".join(have + [h for h in LOOPBACK if h not in have])
    return out


def _auth(home: Path) -> tuple[str, str] | None:
    return basic_auth(auth_string(home))


def basic_auth(secret: str | None) -> tuple[str, str] | None:
    """``user:password`` as httpx's ``auth`` pair (None: send none)."""
    if not secret:
        return None
    user, _, password = secret.partition(":")
    return user, password


def find_local_api(url: str | None) -> str | None:
    """``url``, or the local server's when it is unset; a local server's secret is put in this
    process's environment (the user need not export it). None: no URL and no local server."""
    home = default_home()
    local = read_info(home)
    if local is not None and (not url or url.rstrip("/") == local.api_url):
        use_local_server(local, home)
        return local.api_url
    return url or None


def read_info(home: Path) -> ServerInfo | None:
    """The recorded server if its process is still alive, else None."""
    try:
        data = json.loads((home / "server.json").read_text(encoding="utf-8"))
        info = ServerInfo(pid=int(data["pid"]), port=int(data["port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if psutil.pid_exists(info.pid) else None


def healthy(info: ServerInfo, home: Path, timeout: float = 2.0) -> bool:
    """The server at ``info`` answers, and it is the one whose home is ``home``.

    Two homes can race for one port (two checkouts, parallel test runs): the loser's health check
    would be answered by the winner, and its runs would land on another server.
    """
    import httpx

    try:
        if httpx.get(f"{info.api_url}/health", timeout=timeout).status_code != 200:
            return False
        served = httpx.get(f"{info.api_url}/admin/settings", timeout=timeout, auth=_auth(home)).json().get("home")
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
    return served is not None and Path(served).resolve() == home.resolve()


def port_is_free(port: int) -> bool:
    """Whether the server could bind ``port`` now (SO_REUSEADDR as uvicorn binds: a port in
    TIME_WAIT after a stop is free, so a restart keeps the port every worker was given)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def preferred_port(home: Path) -> int:
    """Prefect's own ``PREFECT_SERVER_API_PORT`` when set; else the port this home's server had last
    (a restart comes back where every worker was pointed); else DEFAULT_PORT."""
    for text in (env("PREFECT_SERVER_API_PORT"), _read_text(home / "last-port")):
        try:
            if text:
                return int(text)
        except ValueError:
            continue
    return DEFAULT_PORT


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def pick_port(preferred: int) -> int:
    if port_is_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def start_lock(home: Path, timeout: float = START_TIMEOUT_S) -> Iterator[None]:
    """One starter at a time per home (two runs started together must not start two servers)."""
    lock = home / "start.lock"
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and not psutil.pid_exists(holder):
                lock.unlink(missing_ok=True)  # left by a starter that died
                continue
            if time.monotonic() > deadline:
                raise StoreError(f"another process has been starting the Prefect server for {timeout:.0f} s ({lock})") from None
            time.sleep(0.2)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def start_server(home: Path, *, port: int | None = None) -> tuple[ServerInfo, bool]:
    """Start the server in the background unless it runs; returns it and whether it was started now.

    Without ``port``: the preferred one (``preferred_port``) if free, else a free one; a port
    another home's server took at the same moment is given up for another.

    Raises:
        StoreError: its database could not be prepared, or it did not answer within the timeout.
    """
    home.mkdir(parents=True, exist_ok=True)
    with start_lock(home):
        info = read_info(home)
        if info is not None and healthy(info, home):
            if not requires_auth(info):
                print(f"The Prefect server in {home} (pid {info.pid}) was started without authentication: any local user can"
                      " use its API. Restart it to close that: prefect-local stop, then prefect-local start.", file=sys.stderr)
            return info, False
        for _ in range(3):
            info = launch(home, port if port is not None else pick_port(preferred_port(home)))
            if info is not None:
                (home / "server.json").write_text(json.dumps({"pid": info.pid, "port": info.port}), encoding="utf-8")
                (home / "last-port").write_text(str(info.port), encoding="utf-8")
                return info, True
            if port is not None:
                break
        raise StoreError(f"the Prefect server did not start: port {port or DEFAULT_PORT} is taken by another server")


def launch(home: Path, port: int) -> ServerInfo | None:
    """``prefect server start`` on ``port``, detached; the server once it answers, or None when
    another server holds the port.

    Raises:
        StoreError: it exited or did not answer in time (the log's last line said).
    """
    child = {**process_environment(), "PREFECT_HOME": str(home), "PREFECT_API_DATABASE_CONNECTION_URL": database_url(),
             "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_API_AUTH_STRING": make_auth_string(home),
             # the UI calls the API where this server listens (by default it would call port 4200: maybe another server)
             "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
             # the links in alerts (the `ui_url` filter): this server's UI, unless one is set (a proxy in front)
             "PREFECT_UI_URL": env("PREFECT_UI_URL") or f"http://127.0.0.1:{port}", **no_proxy_env(process_environment())}
    child.pop("PREFECT_API_URL", None)
    detach: dict[str, object] = {"start_new_session": True}
    if sys.platform == "win32":
        detach = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS}  # type: ignore[attr-defined]
    log = (home / "server.log").open("ab")
    offset = log.tell()  # this start's lines begin here
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=child, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **detach)  # type: ignore[call-overload]
    log.close()
    info = ServerInfo(pid=proc.pid, port=port)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not healthy(info, home):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc.pid)
            with (home / "server.log").open("rb") as f:
                f.seek(offset)
                tail = f.read().decode(errors="replace").strip().splitlines() or ["(no output)"]
            if any("already in use" in line for line in tail):
                return None  # another server bound it first
            raise StoreError(f"the Prefect server did not start (log: {home / 'server.log'}): {tail[-1][:300]}")
        time.sleep(0.3)
    return info


def requires_auth(info: ServerInfo) -> bool:
    """Whether the server refuses a caller without the secret (one started by an older version did not)."""
    import httpx

    try:
        return httpx.get(f"{info.api_url}/admin/version", timeout=5).status_code == 401
    except httpx.HTTPError:
        return True  # not answering: nothing to warn about here


def stop_process(pid: int) -> None:
    """Terminate ``pid`` and its children; kill what is still there after the timeout."""
    try:
        parent = psutil.Process(pid)
        procs = [*parent.children(recursive=True), parent]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT_S)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def stop_server(home: Path) -> bool:
    """Stop the recorded server; False when none was running."""
    info = read_info(home)
    (home / "server.json").unlink(missing_ok=True)
    if info is None:
        return False
    stop_process(info.pid)
    return True


def ensure_api_url() -> str:
    """``PREFECT_API_URL`` if set; else the local server's (started now if needed), exported to this process.

    Called before Prefect is imported, so Prefect's settings see it.
    """
    export(no_proxy_env(process_environment()))  # before the first call to a server on loopback
    url = env("PREFECT_API_URL")
    if url:
        return find_local_api(url) or url  # the local server exported by hand: its secret found too
    home = default_home()
    info, started = start_server(home)
    if started:
        print(f"Started the local Prefect server ({info.api_url}, database in PostgreSQL); "
              "it keeps running for the next run: `prefect-local stop` ends it.", file=sys.stderr, flush=True)
    use_local_server(info, home)
    return info.api_url


def install_automations(api_url: str) -> None:
    """The project's automations (``flows/orchestration/automations.py``) on the server at ``api_url``; what changed is said.

    Raises:
        BadInput: a setting is unusable.
        StoreError: the server refused them.
    """
    export({"PREFECT_API_URL": api_url})
    find_local_api(api_url)
    from flows.orchestration.automations import ensure_automations

    try:
        changed = ensure_automations()
    except BadInput:
        raise
    except Exception as exc:  # the API's errors, whatever client raised them
        raise StoreError(f"could not create the automations on {api_url}: {exc}") from exc
    for name in changed:
        print(f"Automation created: {name}" if name.startswith("market-backfill:") else f"Updated: {name}", file=sys.stderr)
    if not changed:
        alerts = "on" if env("BACKFILL_ALERT_URL") else "off (BACKFILL_ALERT_URL is not set)"
        print(f"Automations on {api_url} are up to date: crash detection on, alerts {alerts}.", file=sys.stderr)
