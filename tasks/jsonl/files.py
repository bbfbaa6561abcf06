"""Finding the JSONL files, and deciding per file what a load must do.

Where they are: under one ``--root`` (``swing/``, ``scalp/``, ``system/``), or each kind on its own
(``--swing``, ``--scalp``, ``--gaps``: a folder, or a glob such as ``logs/system/gap_*.jsonl``), as
the source document keeps them (``config/observer/swing/``, ``config/observer/scalp/``,
``logs/system/``). Folders are searched recursively; names follow ``YYYYMMDD_HHMM.jsonl`` (swing,
scalp) and ``gap_YYYYMMDD.jsonl`` (a glob may name other ``.jsonl`` files). Links are never
followed, and only regular files are read. A file's key (its provenance in every table and its
checkpoint) is ``<swing|scalp|system>/<path under its folder>``, the same whichever way it was found,
qualified by its origin when another root's file of that path was loaded first (``origins.py``).

A file's checkpoint holds how many bytes (whole lines) are loaded and the SHA-256 of that
prefix, so a rerun can tell: finished (skip), grown (load from the checkpoint), or changed: cut
short, rotated (``copytruncate``, or moved away and a new file made under its name) or rewritten.
A changed file is loaded again from its start, and what its earlier content stored is kept: ticks
and bars are things that happened, not a copy of the file (``load.keep_earlier_content``).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import stat
from collections.abc import Iterator
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
_NAMES = {"swing": "YYYYMMDD_HHMM.jsonl", "scalp": "YYYYMMDD_HHMM.jsonl", "gap": "gap_YYYYMMDD.jsonl"}
_CHUNK = 1 << 20
_SPLIT_READ = 8 << 20  # bytes read at a time while cutting a file into pieces


@dataclass(frozen=True)
class JsonlFile:
    """One data file: its name in messages (``<folder>/<path under it>``), kind, size now, path, the
    folder it was found in, and its origin and key in the database (``origins.keyed_files``)."""

    rel: str
    kind: Kind
    size: int
    path: Path
    base: Path
    key: str
    origin: int | None = None


@dataclass(frozen=True)
class Sources:
    """Where the files are: a root with the three folders, and/or a folder or glob per kind (which wins)."""

    root: Path | None = None
    swing: str | None = None
    scalp: str | None = None
    gaps: str | None = None

    def specs(self) -> list[tuple[Kind, str, str, str]]:
        """(kind, folder key, flag, folder or glob) for each kind that has a place."""
        out: list[tuple[Kind, str, str, str]] = []
        for kind, folder, _ in _PATTERNS:
            own = {"swing": self.swing, "scalp": self.scalp, "gap": self.gaps}[kind]
            if own:
                out.append((kind, folder, f"--{'gaps' if kind == 'gap' else kind}", own))
            elif self.root is not None:
                out.append((kind, folder, "--root", str(self.root / folder)))
        return out

    def describe(self) -> str:
        own = [f"{flag} {place}" for _, _, flag, place in self.specs() if flag != "--root"]
        return ", ".join(([f"--root {self.root}"] if self.root is not None and len(own) < 3 else []) + own)


@dataclass(frozen=True)
class Piece:
    """A line-aligned part of a big file, loaded by its own process: bytes [start, end), which hold
    lines ``lines_before + 1`` to ``last_line``. The first piece moves the file's checkpoint as a
    whole-file load does; the others only store rows, and the run moves the checkpoint past them
    once every piece is in (so the checkpoint always covers a loaded prefix, and rows beyond it
    are what an interrupted run left: removed before the file is loaded again)."""

    start: int
    end: int
    lines_before: int
    last_line: int
    first: bool


@dataclass(frozen=True)
class FilePlan:
    file: JsonlFile
    action: Action
    start_byte: int = 0
    start_line: int = 0
    piece: Piece | None = None
    why: str = ""  # for a reload: what made it one
    changed: bool = False  # a reload because the file's loaded content changed (not one an upgrade asked for)
    kept: tuple[int, str] | None = None  # once prepared: rows its earlier content stored, kept, and their provenance now

    @property
    def bytes_to_load(self) -> int:
        if self.piece is not None:
            return self.piece.end - self.piece.start
        return 0 if self.action == "skip" else self.file.size - self.start_byte


def split_points(path: Path, start: int, start_line: int, parts: int, min_bytes: int) -> tuple[list[Piece], int, int]:
    """Cut the complete lines of ``path`` after byte ``start`` into up to ``parts`` pieces of about
    equal bytes (none under ``min_bytes``); returns the pieces, the end of the last complete line
    and the number of lines up to it. One piece means: not worth splitting."""
    size = path.stat().st_size
    step = max(min_bytes, (size - start) // max(parts, 1) + 1)
    cuts: list[tuple[int, int]] = []  # (byte just after a newline, lines before it)
    position, lines, end, end_lines = start, start_line, start, start_line
    target = start + step
    with path.open("rb") as fh:
        fh.seek(start)
        while chunk := fh.read(_SPLIT_READ):
            while target < position + len(chunk):
                newline = chunk.find(b"\n", max(0, target - position))
                if newline < 0:
                    break
                cuts.append((position + newline + 1, lines + chunk.count(b"\n", 0, newline + 1)))
                target = cuts[-1][0] + step
            count = chunk.count(b"\n")
            if count:
                end, end_lines = position + chunk.rfind(b"\n") + 1, lines + count
            lines += count
            position += len(chunk)
    bounds = [(start, start_line)] + [(cut, before) for cut, before in cuts if end - cut >= min_bytes // 2]
    stops = bounds[1:] + [(end, end_lines)]
    pieces = [Piece(begin, stop, before, last, first=i == 0)
              for i, ((begin, before), (stop, last)) in enumerate(zip(bounds, stops, strict=True)) if stop > begin]
    return pieces, end, end_lines


def _walk(base: Path) -> Iterator[Path]:
    """Every entry under ``base``, recursively, never through a link; unreadable folders are skipped."""
    for folder, dirs, names in os.walk(base, followlinks=False):
        dirs.sort()
        for name in sorted(names):
            yield Path(folder) / name


def _regular_size(path: Path) -> int | None:
    try:
        info = path.lstat()
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None  # regular files only: no links, FIFOs or devices


def _glob_base(pattern: str) -> Path:
    """The folder a glob starts from: its longest leading part without wildcards."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[: next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def absent_places(sources: Sources) -> list[str]:
    """The ``--swing``/``--scalp``/``--gaps`` folders that do not exist: nothing to load from them
    (a scheduled run on a machine whose observer has not written yet), said once, not an error."""
    return [f"{flag} {place}" for _, _, flag, place in sources.specs()
            if flag != "--root" and not glob.has_magic(place) and not os.path.lexists(place)]


def discover(sources: Sources, left_out: dict[str, str] | None = None) -> list[JsonlFile]:
    """Every data file the sources name, in load order (by kind, then key: names sort by time).
    Files in their folders that are not data files by name go into ``left_out`` (path → why).

    Raises:
        BadInput: no source given; ``--root`` is not a directory or holds none of the folders; a
            ``--swing``/``--scalp``/``--gaps`` place exists but is neither a folder nor a glob.
    """
    if sources.root is None and not (sources.swing or sources.scalp or sources.gaps):
        raise BadInput("say where the files are: --root DIR, or --swing/--scalp/--gaps (a folder or a glob)")
    if sources.root is not None and not sources.root.is_dir():
        raise BadInput(f"--root {sources.root} is not a directory")
    found: list[JsonlFile] = []
    seen: set[str] = set()
    any_place = False
    for kind, folder, flag, place in sources.specs():
        pattern = next(p for k, _, p in _PATTERNS if k == kind)
        path = Path(place)
        if path.is_dir() and not path.is_symlink():
            any_place = True
            base, candidates, named = path, _walk(path), True
        elif glob.has_magic(place):
            any_place = True
            base, named = _glob_base(place), False
            candidates = iter(sorted(Path(p) for p in glob.glob(place, recursive=True)))
        elif flag == "--root" or not os.path.lexists(place):
            continue  # a root without this kind's folder, or a folder not there (yet): nothing of this kind (absent_places)
        else:
            raise BadInput(f"{flag} {place}: not a folder, and not a glob (like logs/system/gap_*.jsonl)")
        for candidate in candidates:
            if not (pattern.match(candidate.name) if named else candidate.name.endswith(".jsonl")):
                if left_out is not None and named and candidate.name.endswith(".jsonl"):
                    left_out[str(candidate)] = f"not named like a {kind} file ({_NAMES[kind]})"
                continue
            if not named and not candidate.resolve().is_relative_to(base.resolve()):
                continue  # a glob through a linked folder that leads elsewhere: not followed
            size = _regular_size(candidate)
            if size is None:
                continue
            rel = f"{folder}/{candidate.relative_to(base).as_posix()}"
            if rel not in seen:
                seen.add(rel)
                found.append(JsonlFile(rel, kind, size, candidate.resolve(), base.resolve(), key=rel))
    if not found and not any_place:
        raise BadInput(f"--root {sources.root} has no swing/, scalp/ or system/ folder")
    order = {kind: i for i, (kind, _, _) in enumerate(_PATTERNS)}
    return sorted(found, key=lambda f: (order[f.kind], f.rel))


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


def plan_files(conn: psycopg.Connection[Any], files: list[JsonlFile]) -> list[FilePlan]:
    """Decide per file: new, append (from the checkpoint), reload (earlier content changed, or an
    upgrade asked for it) or skip. A checkpoint at byte 0 (a claimed key, ``origins.py``) is new."""
    rows = conn.execute(
        "SELECT source_file, bytes_loaded, lines_loaded, prefix_sha256, must_reload FROM jsonl_file_checkpoints"
        " WHERE source_file = ANY(%s)",
        ([f.key for f in files],),
    ).fetchall()
    checkpoints = {r[0]: (int(r[1]), int(r[2]), r[3], r[4]) for r in rows}
    plans = []
    for f in files:
        cp = checkpoints.get(f.key)
        if cp is None or (cp[0] == 0 and not cp[3]):
            plans.append(FilePlan(f, "new"))
            continue
        loaded, lines, sha, must_reload = cp
        if must_reload:
            plans.append(FilePlan(f, "reload", why=must_reload))
        elif f.size < loaded:
            plans.append(FilePlan(f, "reload", changed=True, why=f"earlier content changed: it is {f.size:,} bytes, shorter than the "
                                  f"{loaded:,} loaded from it (truncated or rotated)"))
        elif prefix_sha256(f.path, loaded) != sha:
            plans.append(FilePlan(f, "reload", changed=True, why=f"earlier content changed: its first {loaded:,} bytes are not the ones"
                                  " loaded (rewritten, or replaced by another file of its name)"))
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
