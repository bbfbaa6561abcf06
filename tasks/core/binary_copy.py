"""A pandas frame into a table with one binary COPY, its payload built by numpy.

Binary COPY needs no text rendering on our side nor parsing on the server's. Row by row
(``write_row``), psycopg still spent ~0.5-1.5 us a row turning Python values into it, which for the
3 million bars of a cold valuation was seconds of a worker's CPU. Rows that share the same shape
(which values are NULL, how long each text is) are fixed-width records, so numpy lays out each
such block at once; a frame of too many shapes (free text) goes row by row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = b"\xff\xff"
_FIXED = {"float8": ">f8", "int8": ">i8", "date": ">i4"}
_PG_EPOCH = np.datetime64("2000-01-01", "D")
MAX_SHAPES = 256  # more row shapes than this (free text): row by row is as quick


def copy_frame(cur: psycopg.Cursor[Any], table: str, columns: dict[str, str], frame: pd.DataFrame) -> None:
    """COPY ``frame`` into ``table`` (``columns``: name → ``text``, ``date``, ``float8`` or ``int8``).

    NaN, NaT, None and ±inf become NULL; dates may be ``date`` objects or timestamps.
    """
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns))
    payload = binary_payload(frame, columns)
    with cur.copy(query) as copy:
        if payload is not None:
            copy.write(payload)
            return
        copy.set_types(list(columns.values()))
        for row in zip(*[_python_values(frame[name], kind) for name, kind in columns.items()], strict=True):
            copy.write_row(row)


def binary_payload(frame: pd.DataFrame, columns: dict[str, str]) -> bytes | None:
    """The whole COPY stream of ``frame`` in PostgreSQL's binary format, or None when its rows have
    more than ``MAX_SHAPES`` shapes."""
    n = len(frame)
    data: list[np.ndarray] = []  # per column: the values (text: the row's index into ``texts``)
    texts: dict[int, np.ndarray] = {}
    sizes = np.empty((n, len(columns)), dtype=np.int64)  # per row and column: bytes of the value, -1 for NULL
    for i, (name, kind) in enumerate(columns.items()):
        values, null = _column(frame[name], kind)
        if kind == "text":
            codes, uniques = values
            encoded = [str(u).encode() for u in uniques]
            lengths = np.array([len(e) for e in encoded] or [0], dtype=np.int64)
            texts[i] = np.array(encoded or [b""], dtype=f"S{max(1, int(lengths.max()))}")
            data.append(codes)
            sizes[:, i] = np.where(null, -1, lengths[np.maximum(codes, 0)])
        else:
            data.append(values)
            sizes[:, i] = np.where(null, -1, np.dtype(_FIXED[kind]).itemsize)
    shape_of = _shapes(sizes)
    if shape_of is None:
        return None
    blocks = [_HEADER]
    kinds = list(columns.values())
    for s in range(int(shape_of.max()) + 1 if n else 0):
        rows = np.flatnonzero(shape_of == s)
        shape = sizes[rows[0]]
        fields: list[tuple[str, str]] = [("count", ">i2")]
        for i, size in enumerate(shape):
            fields.append((f"len{i}", ">i4"))
            if size > 0:
                fields.append((f"val{i}", f"S{size}" if kinds[i] == "text" else _FIXED[kinds[i]]))
        block = np.empty(len(rows), dtype=fields)
        block["count"] = len(columns)
        for i, size in enumerate(shape):
            block[f"len{i}"] = size
            if size > 0:
                block[f"val{i}"] = texts[i][data[i][rows]] if kinds[i] == "text" else data[i][rows]
        blocks.append(block.tobytes())
    blocks.append(_TRAILER)
    return b"".join(blocks)


def _shapes(sizes: np.ndarray) -> np.ndarray | None:
    """Each row's shape as a number from 0 (rows of equal sizes share one), or None for more than
    ``MAX_SHAPES`` shapes. Column by column with hashing, not a sort of the rows."""
    shape_of = np.zeros(len(sizes), dtype=np.int64)
    for column in sizes.T:
        codes, uniques = pd.factorize(column)
        shape_of, combined = pd.factorize(shape_of * len(uniques) + codes)
        if len(combined) > MAX_SHAPES:
            return None
    return shape_of


def _column(values: pd.Series, kind: str) -> tuple[Any, np.ndarray]:
    """One column's values for ``binary_payload`` and where it is NULL."""
    if kind == "float8":
        floats = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return floats, ~np.isfinite(floats)
    if kind == "int8":
        null = values.isna().to_numpy()
        return values.where(~null, 0).astype("int64").to_numpy(), null
    if kind == "date":
        stamps = pd.DatetimeIndex(values.to_numpy(dtype=object))
        null = np.asarray(stamps.isna())
        days = stamps.to_numpy().astype("datetime64[D]")
        return np.where(null, 0, (days - _PG_EPOCH).astype(np.int64)).astype(np.int32), null
    if kind == "text":
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        return (codes, list(uniques)), codes < 0
    raise ValueError(f"no binary COPY of {kind} columns here")


def _python_values(values: pd.Series, kind: str) -> list[Any]:
    """One column as Python values for ``write_row``, read the same way as for ``binary_payload``."""
    data, null = _column(values, kind)
    if kind == "text":
        codes, uniques = data
        out: list[Any] = [str(uniques[c]) for c in codes]
    elif kind == "date":
        out = (_PG_EPOCH + data.astype("timedelta64[D]")).astype(object).tolist()
    else:
        out = data.tolist()
    for i in np.flatnonzero(null):
        out[i] = None
    return out
