"""The numpy-built binary COPY stores exactly what the row-by-row COPY does, odd values included."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

import tasks.core.binary_copy as binary_copy
from tasks.core.binary_copy import MAX_SHAPES, binary_payload, copy_frame

COLUMNS = {"ticker": "text", "trade_date": "date", "price": "float8", "volume": "int8", "note": "text"}


def _copied(db: psycopg.Connection[Any], frame: pd.DataFrame, table: str) -> list[tuple[Any, ...]]:
    db.execute(f"CREATE TEMP TABLE {table} (n serial, ticker text, trade_date date, price float8, volume int8, note text)")
    with db.cursor() as cur:
        copy_frame(cur, table, COLUMNS, frame)
    return db.execute(f"SELECT ticker, trade_date, price, volume, note FROM {table} ORDER BY ticker COLLATE \"C\" NULLS FIRST,"  # noqa: S608
                      " trade_date, price, volume, note").fetchall()


def test_odd_values_arrive_as_sent_and_nulls_as_null(db: psycopg.Connection[Any]) -> None:
    frame = pd.DataFrame({
        "ticker": ["BRK-B", "ÄÖ", None, "A", ""],
        "trade_date": [dt.date(2024, 1, 2), pd.Timestamp("1999-12-31"), None, dt.date(2000, 1, 1), pd.NaT],
        "price": [1.5, np.nan, np.inf, -2.25, 1e300],
        "volume": pd.array([2**62, None, -5, 0, 7], dtype="Int64"),
        "note": ["tab\there", None, "", "x", "new\nline"],
    })
    assert binary_payload(frame, COLUMNS) is not None  # five shapes: the numpy path
    assert _copied(db, frame, "fast") == [
        (None, None, None, -5, ""),
        ("", None, 1e300, 7, "new\nline"),
        ("A", dt.date(2000, 1, 1), -2.25, 0, "x"),
        ("BRK-B", dt.date(2024, 1, 2), 1.5, 2**62, "tab\there"),
        ("ÄÖ", dt.date(1999, 12, 31), None, None, None),
    ]


def test_many_rows_and_shapes_match_the_row_by_row_copy(db: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    n = 5_000
    frame = pd.DataFrame({
        "ticker": rng.choice(["SPY", "BRK-B", "Ä", None], n),
        "trade_date": rng.choice(np.array([dt.date(2024, 1, 2), dt.date(1970, 1, 1), None, dt.date(2099, 12, 31)], dtype=object), n),
        "price": rng.choice([0.1, np.nan, -np.inf, 123456.789], n),
        "volume": pd.array(rng.choice(np.array([1, 2**40, None], dtype=object), n), dtype="Int64"),
        "note": rng.choice(["", "ok", None], n),
    })
    fast = _copied(db, frame, "fast")
    monkeypatch.setattr(binary_copy, "binary_payload", lambda *_: None)  # the row-by-row path, kept for free text
    slow = _copied(db, frame, "slow")
    assert len(fast) == n and fast == slow


def test_free_text_goes_row_by_row() -> None:
    frame = pd.DataFrame({"ticker": [f"T{'x' * k}" for k in range(MAX_SHAPES + 1)], "trade_date": dt.date(2024, 1, 2), "price": 1.0,
                          "volume": 1, "note": ""})
    assert binary_payload(frame, COLUMNS) is None
    assert binary_payload(frame.iloc[:MAX_SHAPES], COLUMNS) is not None
