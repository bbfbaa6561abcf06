"""``prefect-local`` as operators meet it: its API lets in only callers with its secret, a restart
keeps its port and secret (every worker was given them), two homes started at the same moment never
end up sharing one server, bad ports are refused."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import pytest

from test import prefect_http
from test.fix_prefect import local_prefect_env, prefect_local
from test.prefect_http import exported
from test.prefect_server import free_port

pytestmark = pytest.mark.slow


def api_url(done: object) -> str:
    return exported(getattr(done, "stdout", ""))["PREFECT_API_URL"]


def served_home(url: str) -> Path:
    return Path(prefect_http.get(f"{url}/admin/settings", timeout=10).json()["home"]).resolve()


def test_two_homes_started_together_get_a_server_each(tmp_path: Path, pg_server: tuple[str, Path | None]) -> None:
    port = free_port()
    envs = [{**local_prefect_env(tmp_path / f"home{i}", pg_server, own_database=True), "PREFECT_SERVER_API_PORT": str(port)}
            for i in (1, 2)]
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            done = list(pool.map(lambda e: prefect_local("start", e), envs))
        assert [d.returncode for d in done] == [0, 0], [d.stderr for d in done]
        urls = [api_url(d) for d in done]
        assert len(set(urls)) == 2 and f"http://127.0.0.1:{port}/api" in urls
        for env, url in zip(envs, urls, strict=True):
            assert served_home(url) == Path(env["BACKFILL_PREFECT_HOME"]).resolve()
            recorded = json.loads((Path(env["BACKFILL_PREFECT_HOME"]) / "server.json").read_text())
            assert url.endswith(f":{recorded['port']}/api")
    finally:
        for env in envs:
            prefect_local("stop", env)


@pytest.mark.parametrize("port", ["99999", "0", "http"])
def test_a_bad_port_is_refused_with_exit_2(tmp_path: Path, pg_server: tuple[str, Path | None], port: str) -> None:
    env = local_prefect_env(tmp_path / "home", pg_server)
    done = prefect_local("start", env, "--port", port, in_process=True)
    assert done.returncode == 2
    assert "--port" in done.stderr and port in done.stderr
    assert not (tmp_path / "home" / "server.json").exists()


def test_the_api_lets_in_only_callers_with_the_secret_that_commands_and_workers_find(tmp_path: Path,
                                                                                    pg_server: tuple[str, Path | None]) -> None:
    import os
    import stat
    import subprocess
    import sys
    import uuid

    import httpx

    from test.fix_yahoo import ROOT

    home, port = tmp_path / "home", free_port()
    env = {**local_prefect_env(home, pg_server, own_database=True), "PREFECT_UI_ENABLED": "true"}
    try:
        started = prefect_local("start", env, "--port", str(port))
        assert started.returncode == 0, started.stderr
        secret_file = home / "api-auth"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        secret = secret_file.read_text().strip()
        user, _, password = secret.partition(":")
        assert user == "market-backfill" and len(password) >= 40
        said = started.stdout + started.stderr + (home / "server.log").read_text(errors="replace")
        assert password not in said and password[:8] not in said  # printed as a command that reads the file
        api = f"http://127.0.0.1:{port}/api"
        assert exported(started.stdout) == {"PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": secret}

        assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).status_code == 401  # any local user, no secret
        assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10, auth=(user, "wrong")).status_code == 401
        assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10, auth=(user, password)).status_code == 200
        # The UI calls this server's API, not port 4200's (maybe another checkout's server).
        assert httpx.get(f"http://127.0.0.1:{port}/ui-settings", timeout=10).json()["api_url"] == api

        # Prefect's own CLI (what a worker is) gets in with the exported lines, and not without them.
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")} | env
        cli = [sys.executable, "-m", "prefect", "work-pool", "ls"]
        refused = subprocess.run(cli, cwd=ROOT, env=base | {"PREFECT_API_URL": api}, capture_output=True, text=True, timeout=120)
        assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
        listed = subprocess.run(cli, cwd=ROOT, env=base | exported(started.stdout), capture_output=True, text=True, timeout=120)
        assert listed.returncode == 0, listed.stderr
        # The project's own commands find the secret in the home without the user typing it.
        missing = str(uuid.uuid4())
        moved = prefect_local("run-now", env, missing)
        assert moved.returncode == 2 and f"no flow run {missing}" in moved.stderr, moved.stderr
        moved = prefect_local("run-now", {**env, "PREFECT_API_URL": api}, missing)
        assert moved.returncode == 2 and f"no flow run {missing}" in moved.stderr, moved.stderr
        # A restart without --port comes back on the same port (every worker was given that URL),
        # though the server's side of it sits in TIME_WAIT from connections it closed, with the secret
        # every worker was given.
        for _ in range(20):
            prefect_http.get(f"{api}/health", timeout=10, headers={"Connection": "close"})
        assert prefect_local("stop", env).returncode == 0
        again = prefect_local("start", env)
        assert again.returncode == 0, again.stderr
        assert exported(again.stdout) == {"PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": secret}
    finally:
        prefect_local("stop", env)
