"""A real Prefect server for tests and benchmarks: started in a temporary home, ready when healthy."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(home: Path, port: int) -> dict[str, str]:
    """What a process needs to use (or be) the server on ``port`` with its data in ``home``."""
    return {"PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_ENABLED": "false"}


def start_prefect_server(env: dict[str, str], cwd: Path, *, timeout: float = 120.0) -> subprocess.Popen[bytes]:
    """``prefect server start`` with ``env`` (see ``server_env``); returns once /api/health answers.

    Raises:
        RuntimeError: it did not come up in time (the process is stopped).
    """
    port = env["PREFECT_SERVER_API_PORT"]
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--port", port], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"Prefect server did not start within {timeout:.0f} s")
