"""A big scalp file over several loader processes: the run cuts it into line-aligned pieces, holds the
file's lock while they load, and moves its checkpoint past them once every piece is in.

Until then the checkpoint only moves with the first piece, so it always covers a loaded prefix.
Killed at any moment, the next run removes the rows past the checkpoint (``load.prepare_file``)
and loads from there: nothing lost, nothing twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tasks.core.db import connect, database_errors
from tasks.core.errors import PipelineError
from tasks.jsonl.files import FilePlan, prefix_sha256, split_points
from tasks.jsonl.load import FileResult, prepare_file, release_file_lock, take_file_lock, write_checkpoint

SPLIT_MB = 32.0  # the default of --split-mb: below this a file loads faster in one process than in pieces


def max_pieces(concurrency: int) -> int:
    """How many pieces a big file is cut into at most: one per CPU core (at least two), within the
    run's loader processes. The loaders share the cores with the server's backends, and four pieces
    on two cores spent a third more CPU per tick than two (bench/NOTES.md)."""
    return min(concurrency, max(2, os.cpu_count() or 1))


@dataclass
class _Split:
    plan: FilePlan  # the whole file, as planned under its lock
    pieces: int
    end: int  # end of its last complete line when it was cut
    end_lines: int
    digest: cf.Future[str]
    result: FileResult
    errors: list[str] = field(default_factory=list)
    arrived: int = 0
    started: float = field(default_factory=time.perf_counter)


class Splitter:
    """Cuts the big files of one pass and puts their pieces' results back together (see module doc)."""

    def __init__(self, dsn: str, parts: int, split_mb: float) -> None:
        self.parts, self.min_bytes = parts, int(split_mb * 1e6)
        self.dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None
        self._hasher = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="jsonl-prefix-hash")
        self._files: dict[str, _Split] = {}

    def wants(self, plan: FilePlan) -> bool:
        return (self.parts > 1 and self.min_bytes > 0 and plan.file.kind == "scalp" and plan.action != "skip"
                and plan.bytes_to_load >= self.min_bytes)

    def split(self, plan: FilePlan) -> list[FilePlan]:
        """The file's pieces, or the plan itself when another run has the file (its loader says so), or
        it is not worth cutting after all."""
        conn = self._connection()
        rel = plan.file.rel
        if not take_file_lock(conn, plan.file.key):
            return [plan]
        kept = False  # the lock stays with the run only when the file is cut
        try:
            plan = prepare_file(conn, plan)
            start, lines = (plan.start_byte, plan.start_line) if plan.action == "append" else (0, 0)
            pieces, end, end_lines = split_points(plan.file.path, start, lines, self.parts, self.min_bytes // 2)
            if plan.action == "skip" or len(pieces) < 2:
                return [plan]
            self._files[rel] = _Split(plan, len(pieces), end, end_lines, self._hasher.submit(prefix_sha256, plan.file.path, end),
                                      FileResult(rel, plan.file.kind, plan.action, incomplete_tail=end < plan.file.size,
                                                 pieces=len(pieces), kept=plan.kept))
            kept = True
            return [dataclasses.replace(plan, piece=p) for p in pieces]
        except (PipelineError, OSError):  # the file's own loader meets it again and reports it for that file
            return [plan]
        finally:
            if not kept:
                release_file_lock(conn, plan.file.key)

    def arrived(self, outcome: FileResult | tuple[str, str]) -> FileResult | tuple[str, str] | None:
        """A loader's outcome: passed on as it is for a whole file; for a piece, None until the file's
        last piece is in, then the file's result (its checkpoint moved past every piece) or failure."""
        rel = outcome[0] if isinstance(outcome, tuple) else outcome.rel
        split = self._files.get(rel)
        if split is None:
            return outcome
        split.arrived += 1
        if isinstance(outcome, tuple):
            split.errors.append(outcome[1])
        else:
            _add(split.result, outcome)
        if split.arrived < split.pieces:
            return None
        del self._files[rel]
        conn = self._connection()
        try:
            if split.errors:
                return rel, "; ".join(dict.fromkeys(split.errors))
            f = split.plan.file
            with database_errors(f"finishing {rel} failed (its pieces are stored; the next run checks and completes it)"):
                with conn.transaction(), conn.cursor() as cur:
                    write_checkpoint(cur, f, split.end, split.end_lines, split.digest.result(), split.result.days)
            split.result.rejects = sorted(split.result.rejects)[:50]
            split.result.seconds = time.perf_counter() - split.started
            return split.result
        finally:
            release_file_lock(conn, split.plan.file.key)

    def __enter__(self) -> Splitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release every lock still held (an interrupted pass) and the connection."""
        self._hasher.shutdown(wait=False, cancel_futures=True)
        if self._conn is not None:
            self._conn.close()  # the server drops the session's locks with it

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = connect(self.dsn, autocommit=True)
        return self._conn


def _add(total: FileResult, piece: FileResult) -> None:
    total.lines += piece.lines
    total.loaded += piece.loaded
    total.rejected += piece.rejected
    total.copies += piece.copies
    total.bytes_read += piece.bytes_read
    total.retries += piece.retries
    total.rejects.extend(piece.rejects)
    total.minutes |= piece.minutes
    total.days |= piece.days
