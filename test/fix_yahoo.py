"""The fake Yahoo for a test, and a helper that runs a CLI as a user would: in this process with the
environment, folder and argv a subprocess would have (``test/in_process.py``), or as a subprocess
where the process itself is under test (``as_process=True``) or the run goes through Prefect."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from test.fake_yahoo import FakeYahoo
from test.in_process import run_main

ROOT = Path(__file__).resolve().parent.parent
TEST_RATE = "3000/min"
NO_CACHE_DIR = {"flows.backfill_status", "flows.event_report", "flows.jsonl_ingest"}  # commands that download nothing


@pytest.fixture
def fake_yahoo() -> Iterator[FakeYahoo]:
    with FakeYahoo() as fake:
        yield fake


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


CliRunner = Callable[..., CliResult]


def cli_env(fake: FakeYahoo | None, dsn: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy",
                                                                    "https_proxy"))}
    env.pop("DATABASE_URL", None)
    env.pop("UV_RUN_RECURSION_DEPTH", None)  # hints name `uv run` only where a test starts the command with uv
    if fake is not None:
        env.update(fake.env())
    if dsn is not None:
        env["DATABASE_URL"] = dsn
    env["PYTHONWARNINGS"] = "ignore"
    env["BACKFILL_ORCHESTRATE"] = "plain"
    # The fake Yahoo is on loopback: tests pace it at 3000/min, as a user who knows their source may
    # (YAHOO_RATE); the tests of the default budget (the source document's limits) drop it.
    env["YAHOO_RATE"] = TEST_RATE
    env.update(extra)
    return env


@pytest.fixture
def run_cli(fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path, prefect_env: dict[str, str]) -> CliRunner:
    """``run_cli("flows.etf_backfill", "--days", "5", ...)`` → CliResult; cache in tmp, DB = this test's."""
    cache = tmp_path / "cache"

    def run(module: str, *args: str, env: dict[str, str | None] | None = None, timeout: float = 120,
            cache_dir: Path | None = None, as_process: bool = False, cwd: Path = ROOT) -> CliResult:
        full_env = cli_env(fake_yahoo, dsn, **prefect_env)
        for key, value in (env or {}).items():
            if value is None:  # not set at all
                full_env.pop(key, None)
            else:
                full_env[key] = value
        argv = [*args]
        if "--cache-dir" not in args and module not in NO_CACHE_DIR:
            argv += ["--cache-dir", str(cache_dir or cache)]
        if not (as_process or through_prefect(argv, full_env)):
            return CliResult(*run_main(module, argv, full_env, cwd))
        argv = [sys.executable, "-m", module, *argv]
        proc = subprocess.run(argv, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def through_prefect(args: list[str], env: dict[str, str]) -> bool:
    """Whether a command line runs as a Prefect flow: those run as subprocesses (Prefect reads its
    settings once per process, where this one has none)."""
    flags = [a.split("=", 1)[1] for a in args if a.startswith("--orchestrate=")]
    flags += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--orchestrate"]
    mode = flags[-1] if flags else env.get("BACKFILL_ORCHESTRATE") or "auto"
    return mode == "prefect" or (mode == "auto" and bool(env.get("PREFECT_API_URL")))


def kill_9_leaving_no_orphans(proc: subprocess.Popen[Any]) -> None:
    """``kill -9`` a CLI run and check that its worker processes end with it (none left behind)."""
    import signal

    import psutil

    workers = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"orphaned workers still running: {[p.pid for p in alive]}"
