"""Artifacts that never stop the data: every write to Prefect's API goes through one background
thread, so a Prefect server that is down (restarted, a network blip) costs the run its progress
bar for a while, never its fetching or storing.

- A progress update keeps only the latest value: while one write waits on the API (the client
  retries for a while), later values replace the queued one instead of piling up.
- A write that fails is dropped with one warning per run; the next one is tried again.
- At the end of a run, ``finish`` waits for the API to answer (up to ``API_WAIT_S``) before the
  summary is written and the run's final state is proposed, so a run that outlived an outage still
  ends in the state that says what it did.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

API_WAIT_S = 600.0  # how long the end of a run waits for Prefect's API to come back


class RunArtifacts:
    """A run's artifact writes, on one background thread (see module doc)."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self._logger = logger
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefect-artifacts")
        self._lock = threading.Lock()
        self._latest: float | None = None
        self._queued = False
        self._progress_id: Any = None
        self._warned = False

    def _submit(self, fn: Callable[[], Any]) -> Future[Any]:
        ctx = contextvars.copy_context()  # the flow run's context, for the writes that attach to it
        return self._pool.submit(ctx.run, self._guarded, fn)

    def _guarded(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # the API is unreachable or refused: the data goes on
            if not self._warned:
                self._warned = True
                self._logger.warning(f"Prefect's API did not take an artifact update ({type(exc).__name__}): "
                                     "progress is shown again once it answers; the run goes on")
            return None

    def start_progress(self, key: str, description: str) -> None:
        from prefect.artifacts import create_progress_artifact

        def create() -> None:
            self._progress_id = create_progress_artifact(progress=0.0, key=key, description=description)

        self._submit(create)

    def progress(self, done: int, total: int) -> None:
        """Record progress; written by the background thread (the latest value only)."""
        if not total:
            return
        with self._lock:
            self._latest = 100.0 * done / total
            if self._queued:
                return
            self._queued = True
        self._submit(self._write_progress)

    def _write_progress(self) -> None:
        from prefect.artifacts import update_progress_artifact

        with self._lock:
            value, self._queued = self._latest, False
        if self._progress_id is not None and value is not None:
            update_progress_artifact(artifact_id=self._progress_id, progress=value)

    def markdown(self, key: str, markdown: str, description: str) -> None:
        from prefect.artifacts import create_markdown_artifact

        self._submit(lambda: create_markdown_artifact(key=key, markdown=markdown, description=description))

    def finish(self, wait: float = API_WAIT_S) -> None:
        """Wait for Prefect's API (up to ``wait`` s), then for every queued write."""
        wait_for_api(wait, self._logger)
        self._pool.shutdown(wait=True)


def wait_for_api(wait: float, logger: logging.Logger | logging.LoggerAdapter[Any]) -> bool:
    """Whether Prefect's API answers within ``wait`` seconds (said once when it has to be waited for)."""
    from prefect.client.orchestration import get_client

    deadline, said = time.monotonic() + wait, False
    while True:
        try:
            with get_client(sync_client=True) as client:
                if client.api_healthcheck() is None:
                    if said:
                        logger.info("Prefect's API answers again")
                    return True
        except Exception:  # unreachable: wait and ask again
            pass
        if time.monotonic() > deadline:
            return False
        if not said:
            said = True
            logger.warning(f"Prefect's API does not answer: waiting up to {wait:.0f} s to record how the run ended")
        time.sleep(2.0)
