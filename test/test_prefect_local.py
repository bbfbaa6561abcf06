"""``prefect-local`` as operators meet it: a restart keeps its port (every worker was given that
URL), two homes started at the same moment never end up sharing one server, bad ports are refused."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import httpx
import pytest

from test.fix_prefect import local_prefect_env, prefect_local
from test.prefect_server import free_port

pytestmark = pytest.mark.slow


def api_url(done: object) -> str:
    out = getattr(done, "stdout", "")
    return next(x for x in out.splitlines() if x.startswith("export PREFECT_API_URL=")).split("=", 1)[1]


def served_home(url: str) -> Path:
    return Path(httpx.get(f"{url}/admin/settings", timeout=10).json()["home"]).resolve()


def test_a_restarted_server_comes_back_on_the_same_port(tmp_path: Path, pg_server: tuple[str, Path | None]) -> None:
    port = free_port()
    env = {**local_prefect_env(tmp_path / "home", pg_server, own_database=True), "PREFECT_SERVER_API_PORT": str(port)}
    try:
        first = prefect_local("start", env)
        assert first.returncode == 0, first.stderr
        assert api_url(first) == f"http://127.0.0.1:{port}/api"
        for _ in range(20):  # connections the server closes: its side of the port sits in TIME_WAIT after the stop
            httpx.get(f"{api_url(first)}/health", timeout=10, headers={"Connection": "close"})
        assert prefect_local("stop", env).returncode == 0
        again = prefect_local("start", env)
        assert again.returncode == 0, again.stderr
        assert api_url(again) == f"http://127.0.0.1:{port}/api"
    finally:
        prefect_local("stop", env)


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
    done = prefect_local("start", env, "--port", port)
    assert done.returncode == 2
    assert "--port" in done.stderr and port in done.stderr
    assert not (tmp_path / "home" / "server.json").exists()
