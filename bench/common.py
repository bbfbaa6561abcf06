"""Shared bench plumbing: a fake Yahoo, a throwaway embedded database, timing, RESULTS.md sections."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"


@dataclass
class Timed:
    seconds: float
    code: int
    stdout: str
    stderr: str


def start_server(work: Path) -> Any:
    """A throwaway embedded PostgreSQL in ``work/pg`` (deleted by its ``cleanup()``)."""
    from tasks.core.db import start_embedded_server

    return start_embedded_server(work / "pg", cleanup_mode="delete")


def fresh_database(server_dsn: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = name
    return make_conninfo("", **params)


def run_module(module: str, args: list[str], env: dict[str, str], timeout: float = 3600) -> Timed:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return Timed(time.perf_counter() - started, proc.returncode, proc.stdout, proc.stderr)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the ``## name`` section of bench/RESULTS.md."""
    fresh = "# Benchmark results\n\nWritten by the scripts in bench/; each section is replaced by its script's latest run.\n"
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else fresh
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = f"## {name}\n\n_Run {stamp} on {machine()}._\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text, encoding="utf-8")
