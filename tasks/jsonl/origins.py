"""A file's key in the database: its origin (host and folder) and its path under that folder.

Two roots may hold files of the same name (two observers, two hosts feeding one database): they are
different files. The first origin to load a path keys it by that path (``scalp/20260122_0100.jsonl``,
as before origins existed); another origin's file of the same path gets ``<origin id>:<path>``.
A key is claimed in ``jsonl_file_checkpoints`` before anything of the file is loaded, so two runs
never pick one key for two files. Checkpoints from before origins (no origin recorded) are taken
over by the first origin that presents their path: its run then skips, appends or reloads that file
as its content says, so whichever root loaded it before, each root ends with its own rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Callable
from typing import Any

import psycopg

from tasks.jsonl.files import JsonlFile

_STAMP = re.compile(r"(?:^|/)(?:gap_)?(\d{8})(?:_(\d{4}))?\.jsonl$")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def file_time(rel: str) -> dt.datetime | None:
    """The time a file's name gives (``YYYYMMDD_HHMM.jsonl``, ``gap_YYYYMMDD.jsonl``), or None."""
    found = _STAMP.search(rel)
    if found is None:
        return None
    try:
        return dt.datetime.strptime(found[1] + (found[2] or "0000"), "%Y%m%d%H%M")
    except ValueError:
        return None


def keyed_files(conn: psycopg.Connection[Any], files: list[JsonlFile], host: str, *, claim: bool,
                say: Callable[[str], None]) -> list[JsonlFile]:
    """``files`` with their origin and key. With ``claim`` (not a dry run), new origins are recorded
    (and said), and each new file's key is claimed by an empty checkpoint (``conn`` in autocommit:
    each claim is seen by other runs at once)."""
    folders = sorted({str(f.base) for f in files})
    if not folders:
        return files
    origins = _origins(conn, host, folders, claim=claim, say=say)
    rels = [f.rel for f in files]
    known = {(r[0], r[1]): r[2] for r in conn.execute(
        "SELECT origin_id, rel, source_file FROM jsonl_file_checkpoints WHERE rel = ANY(%s) AND origin_id IS NOT NULL", (rels,))}
    taken = {r[0]: r[1] for r in conn.execute(
        "SELECT source_file, origin_id FROM jsonl_file_checkpoints WHERE source_file = ANY(%s)", (rels,))}
    out = []
    for f in files:
        origin = origins.get(str(f.base))
        key = known.get((origin, f.rel)) if origin is not None else None
        if key is None:
            key = _claim(conn, f, origin, taken, claim=claim)
        out.append(dataclasses.replace(f, origin=origin, key=key))
    return out


def _origins(conn: psycopg.Connection[Any], host: str, folders: list[str], *, claim: bool,
             say: Callable[[str], None]) -> dict[str, int]:
    if claim:
        for row in conn.execute("INSERT INTO jsonl_origins (host, folder) SELECT %s, f FROM unnest(%s::text[]) f"
                                " ON CONFLICT DO NOTHING RETURNING id, folder", (host, folders)).fetchall():
            say(f"New origin {row[0]}: {row[1]} on {host}")
    return {r[1]: r[0] for r in conn.execute("SELECT id, folder FROM jsonl_origins WHERE host = %s AND folder = ANY(%s)",
                                             (host, folders))}


def _claim(conn: psycopg.Connection[Any], f: JsonlFile, origin: int | None, taken: dict[str, int | None], *, claim: bool) -> str:
    """The key of a file its origin has not loaded yet: its path when that is free (or held by a
    checkpoint from before origins, taken over now), else ``<origin>:<path>``."""
    plain, own = f.rel, f"{origin if origin is not None else 'new'}:{f.rel}"
    if not claim:
        return plain if taken.get(plain) in (None, origin) else own
    for key in (plain, own):
        if key == plain:
            # Another origin's path is not ours to take. Ours already (a run of this origin claimed it
            # after this one read ``known``): the insert below does nothing and the path is the key.
            if taken.get(plain) not in (None, origin):
                continue
            conn.execute("UPDATE jsonl_file_checkpoints SET origin_id = %s WHERE source_file = %s AND origin_id IS NULL",
                         (origin, plain))  # loaded before origins: taken over
        conn.execute("INSERT INTO jsonl_file_checkpoints (source_file, kind, bytes_loaded, lines_loaded, prefix_sha256,"
                     " file_size, origin_id, rel, file_time) VALUES (%s, %s, 0, 0, %s, 0, %s, %s, %s)"
                     " ON CONFLICT (source_file) DO NOTHING",
                     (key, f.kind, EMPTY_SHA256, origin, f.rel, file_time(f.rel)))
        holder = conn.execute("SELECT origin_id FROM jsonl_file_checkpoints WHERE source_file = %s AND rel = %s",
                              (key, f.rel)).fetchone()
        if holder is not None and holder[0] == origin:  # ours: claimed now, or by a run of this origin a moment ago
            taken[key] = origin
            return key
    raise AssertionError(f"no key left for {f.rel}")  # "<origin>:<path>" is only ever claimed by that origin
