"""Prefect's REST API called from a test as an operator's script would: with the server's secret.

``prefect-local`` servers let in only callers that send their ``user:secret`` (basic auth). A test
learns it the way a user does, from the lines ``prefect-local start`` prints (``exported``), and
this module remembers it per API address, so ``get(f"{api}/...")`` sends it.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any
from urllib.parse import urlsplit

import httpx

_AUTH: dict[str, tuple[str, str]] = {}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def remember(env: dict[str, str]) -> dict[str, str]:
    """Send ``env``'s ``PREFECT_API_AUTH_STRING`` to ``env``'s ``PREFECT_API_URL`` from now on; ``env``."""
    url, secret = env.get("PREFECT_API_URL"), env.get("PREFECT_API_AUTH_STRING")
    if url and secret:
        user, _, password = secret.partition(":")
        _AUTH[_origin(url)] = (user, password)
    return env


def exported(stdout: str) -> dict[str, str]:
    """What the ``export`` lines of ``prefect-local start`` (or ``status``) give a shell that evals
    them, as the README says to: ``PREFECT_API_URL`` and ``PREFECT_API_AUTH_STRING`` (remembered)."""
    lines = "\n".join(x for x in stdout.splitlines() if x.startswith("export "))
    assert "PREFECT_API_URL=" in lines and "PREFECT_API_AUTH_STRING=" in lines, stdout
    script = f'{lines}\nprintf "%s\\n%s" "$PREFECT_API_URL" "$PREFECT_API_AUTH_STRING"'
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=True)
    url, secret = done.stdout.split("\n", 1)
    assert secret, f"the export lines gave no secret: {lines}"
    return remember({"PREFECT_API_URL": url, "PREFECT_API_AUTH_STRING": secret})


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("timeout", 10)
    return httpx.request(method, url, auth=_AUTH.get(_origin(url)), **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return request("DELETE", url, **kwargs)
