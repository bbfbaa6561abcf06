"""What a daily bar may hold, wherever it comes from (the source, the download cache): checked once
here, so an impossible value never reaches the database."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

MAX_PRICE = 1e8  # no listed share trades near this; 1e300 or an overflowed float is garbage
MAX_VOLUME = 2**62  # well inside PostgreSQL's bigint; a float like 1.5e30 would wrap around on cast
PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")


def implausible(bars: pd.DataFrame) -> str | None:
    """Why ``bars`` cannot be stored (the first problem found), or None when every row is plausible
    (the rules: ``implausible_values``)."""
    if bars.empty:
        return None
    columns = {c: pd.to_numeric(bars[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan) for c in (*PRICE_COLUMNS, "volume")}
    return implausible_values(columns, bars["trade_date"].to_numpy())


def implausible_values(columns: Mapping[str, np.ndarray], dates: Sequence[Any] | np.ndarray) -> str | None:
    """``implausible`` on float arrays of ``PRICE_COLUMNS`` and ``volume`` (NaN: missing) and the
    rows' dates, which only name the row in the answer.

    Prices must be finite, not negative and below ``MAX_PRICE`` (open, high, low and adj_close may be
    missing; close may not); high must not be below low; volume must be a whole number from 0 to
    ``MAX_VOLUME``.
    """
    for column in PRICE_COLUMNS:
        values = columns[column]
        with np.errstate(invalid="ignore"):
            bad = ~(np.isfinite(values) & (values >= 0) & (values < MAX_PRICE))
        if column != "close":
            bad &= ~np.isnan(values)
        if bad.any():
            i = int(np.argmax(bad))
            return f"{column} {float(values[i])!r} on {_day(dates[i])} is not a plausible price"
    high, low = columns["high"], columns["low"]
    with np.errstate(invalid="ignore"):
        inverted = high < low  # False wherever either is missing
    if inverted.any():
        i = int(np.argmax(inverted))
        return f"high {float(high[i])!r} below low {float(low[i])!r} on {_day(dates[i])}"
    volume = columns["volume"]
    with np.errstate(invalid="ignore"):
        bad_volume = ~(np.isfinite(volume) & (volume >= 0) & (volume <= MAX_VOLUME) & (volume == np.round(volume)))
    if bad_volume.any():
        i = int(np.argmax(bad_volume))
        return f"volume {float(volume[i])!r} on {_day(dates[i])} is not a plausible share count"
    return None


def _day(value: Any) -> str:
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[D]"))
    return str(value.date() if isinstance(value, pd.Timestamp) else value)
