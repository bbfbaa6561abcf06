"""The project's SQL files: ``sql/NNN_*.sql`` migrations and named statements (``sql/<name>.sql``)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import LiteralString, cast

SQL_DIR = Path(__file__).resolve().parent.parent.parent / "sql"
MIGRATION_FILE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@functools.cache
def statement(name: str) -> LiteralString:
    """The text of ``sql/<name>.sql`` (read once), without its trailing semicolon. A ``LiteralString``
    to psycopg: our own file, never built from input (parameters go separately)."""
    return cast(LiteralString, (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8").strip().rstrip(";"))


def migrations() -> list[tuple[str, str]]:
    """``(version, sql)`` of every migration file, in order."""
    found = []
    for path in sorted(SQL_DIR.glob("*.sql")):
        if MIGRATION_FILE.match(path.name):
            found.append((path.stem, path.read_text(encoding="utf-8")))
    return found
