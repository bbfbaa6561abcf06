"""Prefect's own CLI and REST API, as an operator uses them, for the deployment tests."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from test import prefect_http
from test.fix_yahoo import ROOT

POOL = "market-data"  # the pool prefect.yaml names
FINISHED = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


def prefect(*args: str, env: dict[str, str], timeout: float = 180) -> str:
    """``prefect ARGS`` in the checkout; its output (it must succeed)."""
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def run_deployment(name: str, params: dict[str, Any], env: dict[str, str], job_variables: dict[str, Any] | None = None) -> str:
    """``prefect deployment run NAME -p key=value ... [-jv key=value ...]``; returns the new flow run's id."""
    argv = ["deployment", "run", name]
    for key, value in params.items():
        argv += ["-p", f"{key}={json.dumps(value)}"]
    for key, value in (job_variables or {}).items():
        argv += ["-jv", f"{key}={json.dumps(value)}"]
    out = prefect(*argv, env=env)
    found = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
    assert found, out
    return found.group(1)


def create_run(api: str, name: str, params: dict[str, Any], state: dict[str, Any] | None = None,
               job_variables: dict[str, Any] | None = None) -> str:
    """``POST /deployments/{id}/create_flow_run`` for deployment ``FLOW/NAME`` (what ``prefect deployment
    run`` does, without a CLI process; ``state``: created in that state); the new flow run's id."""
    deployment = prefect_http.get(f"{api}/deployments/name/{name}", timeout=10)
    deployment.raise_for_status()
    body = {"parameters": params, **({"state": state} if state else {}), **({"job_variables": job_variables} if job_variables else {})}
    answer = prefect_http.post(f"{api}/deployments/{deployment.json()['id']}/create_flow_run", json=body, timeout=10)
    answer.raise_for_status()
    return str(answer.json()["id"])


def wait_finished(api: str, run_id: str, timeout: float = 180) -> dict[str, Any]:
    """Poll the API until flow run ``run_id`` has finished (a live worker takes it); its final state."""
    deadline = time.monotonic() + timeout
    while True:
        state = dict(read_run(api, run_id)["state"])
        if state["type"] in FINISHED:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"flow run {run_id} did not finish in {timeout:.0f} s: {state}")
        time.sleep(0.5)


@contextlib.contextmanager
def live_worker(env: dict[str, str], log: Path, pool: str = POOL) -> Iterator[subprocess.Popen[bytes]]:
    """``prefect worker start --pool POOL`` running for the block, as an operator leaves one running;
    stopped with Ctrl+C after it."""
    with log.open("ab") as out:
        worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool], cwd=ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        yield worker
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def read_run(api: str, run_id: str) -> dict[str, Any]:
    answer = prefect_http.get(f"{api}/flow_runs/{run_id}", timeout=10)
    answer.raise_for_status()
    return dict(answer.json())


def filter_runs(api: str, **body: Any) -> list[dict[str, Any]]:
    """``POST /flow_runs/filter`` with ``body`` (Prefect's filter schema)."""
    answer = prefect_http.post(f"{api}/flow_runs/filter", timeout=10, json=body)
    answer.raise_for_status()
    return list(answer.json())


def delete_waiting_runs(api: str) -> None:
    """Delete every run still waiting (scheduled or pending): a test's continuations would otherwise
    come due in the next test that polls the same pool."""
    waiting = filter_runs(api, flow_runs={"state": {"type": {"any_": ["SCHEDULED", "PENDING"]}}}, limit=200)
    for run in waiting:
        prefect_http.delete(f"{api}/flow_runs/{run['id']}", timeout=10).raise_for_status()


def work_once(env: dict[str, str], log: Path, pool: str = POOL) -> None:
    """``prefect worker start --pool POOL --run-once``: takes the runs that are due, runs them, exits."""
    with log.open("a") as out:
        done = subprocess.run([sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--run-once"], cwd=ROOT, env=env,
                              stdout=out, stderr=subprocess.STDOUT, text=True, timeout=400)
    assert done.returncode == 0, log.read_text()[-4000:]


def wait_for(check: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)
