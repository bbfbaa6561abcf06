"""Finding the JSONL files under a root, and deciding per file what a load must do.

Layout: ``swing/YYYYMMDD_HHMM.jsonl``, ``scalp/YYYYMMDD_HHMM.jsonl``, ``system/gap_YYYYMMDD.jsonl``.
A file's checkpoint holds how many bytes (whole lines) are loaded and the SHA-256 of that
prefix, so a rerun can tell: finished (skip), grown (load from the checkpoint), rewritten
(reload from the start, after removing what the old content loaded).
"""

from __future__ import annotations

import hashlib
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psycopg

from tasks.core.errors import BadInput

Kind = Literal["swing", "scalp", "gap"]
Action = Literal["new", "append", "reload", "skip"]
_PATTERNS: tuple[tuple[Kind, str, re.Pattern[str]], ...] = (
    ("swing", "swing", re.compile(r"^\d{8}_\d{4}\.jsonl$")),
    ("scalp", "scalp", re.compile(r"^\d{8}_\d{4}\.jsonl$")),
    ("gap", "system", re.compile(r"^gap_\d{8}\.jsonl$")),
)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class JsonlFile:
    """One data file: its path relative to the root (the provenance key), kind and size now."""

    rel: str
    kind: Kind
    size: int


@dataclass(frozen=True)
class FilePlan:
    file: JsonlFile
    action: Action
    start_byte: int = 0
    start_line: int = 0

    @property
    def bytes_to_load(self) -> int:
        return 0 if self.action == "skip" else self.file.size - self.start_byte


def discover(root: Path) -> list[JsonlFile]:
    """Every data file under ``root`` in load order (by kind, then name: names sort by time).

    Raises:
        BadInput: ``root`` is not a directory, or holds none of the expected folders.
    """
    if not root.is_dir():
        raise BadInput(f"--root {root} is not a directory")
    found: list[JsonlFile] = []
    for kind, folder, pattern in _PATTERNS:
        base = root / folder
        if base.is_symlink() or not base.is_dir():  # links are never followed: they could lead out of the root
            continue
        try:
            entries = sorted(base.iterdir())
        except OSError:  # an unreadable folder holds nothing we can load
            continue
        for path in entries:
            if not pattern.match(path.name):
                continue
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):  # regular files only: no links, FIFOs or devices
                found.append(JsonlFile(f"{folder}/{path.name}", kind, info.st_size))
    if not found and not any((root / folder).is_dir() for _, folder, _ in _PATTERNS):
        raise BadInput(f"--root {root} has no swing/, scalp/ or system/ folder")
    return found


def prefix_sha256(path: Path, length: int) -> str:
    """SHA-256 of the first ``length`` bytes of ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        left = length
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def plan_files(conn: psycopg.Connection[Any], root: Path, files: list[JsonlFile]) -> list[FilePlan]:
    """Decide per file: new, append (from the checkpoint), reload (earlier content changed) or skip."""
    rows = conn.execute(
        "SELECT source_file, bytes_loaded, lines_loaded, prefix_sha256 FROM jsonl_file_checkpoints WHERE source_file = ANY(%s)",
        ([f.rel for f in files],),
    ).fetchall()
    checkpoints = {r[0]: (int(r[1]), int(r[2]), r[3]) for r in rows}
    plans = []
    for f in files:
        cp = checkpoints.get(f.rel)
        if cp is None:
            plans.append(FilePlan(f, "new"))
            continue
        loaded, lines, sha = cp
        if f.size < loaded or prefix_sha256(root / f.rel, loaded) != sha:
            plans.append(FilePlan(f, "reload"))
        elif f.size == loaded:
            plans.append(FilePlan(f, "skip", loaded, lines))
        else:
            plans.append(FilePlan(f, "append", loaded, lines))
    return plans


def count_lines(path: Path, start: int = 0) -> int:
    """Complete lines (ending in a newline) from byte ``start`` on."""
    total = 0
    with path.open("rb") as fh:
        fh.seek(start)
        while chunk := fh.read(_CHUNK):
            total += chunk.count(b"\n")
    return total
