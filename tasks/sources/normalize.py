"""yfinance frames → our one bar shape (``types.BAR_COLUMNS``) plus corporate actions.

The raw yfinance frame goes no further than this module. It works on the frame's numpy arrays:
a valuation normalizes one frame per ticker, thousands a run, and pandas' per-call overhead
(building, filtering and sorting small frames) cost more than yfinance's own parsing of them.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from tasks.core.bar_checks import implausible_values
from tasks.core.types import ACTION_COLUMNS, BAR_COLUMNS


class ImplausibleBars(Exception):
    """The source answered with values no market produces (negative, 1e300, a wrapped volume)."""

_RENAME = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Adj Close": "adj_close", "Volume": "volume"}


def normalize_history(symbol: str, frame: pd.DataFrame, within: tuple[dt.date, dt.date] | None = None) -> tuple[pd.DataFrame,
                                                                                                                  pd.DataFrame]:
    """Turn a yfinance ``history``/``download`` frame into (bars, actions); bars only of the
    sessions ``within`` (first, last) when given.

    Rows without a close are dropped (Yahoo sends null rows for halted days); a session given
    twice keeps its last row; bars come in date order; volume becomes an integer; ``adj_close``
    falls back to close when the source omits it. A frame yfinance repaired (``Repaired?``) gives
    a ``repaired`` column (1: changed by the repair).

    Raises:
        KeyError: a price column is missing (the caller treats this as malformed data).
        ImplausibleBars: a value no market produces (``core/bar_checks.py``): the answer is unusable.
    """
    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        index = index.tz_convert("America/New_York").tz_localize(None)
    days = index.to_numpy().astype("datetime64[D]")  # the session's date where it trades
    values: dict[str, np.ndarray] = {}
    for source, target in _RENAME.items():
        if source not in frame.columns and source != "Adj Close":
            raise KeyError(f"column {source!r} missing")
        values[target] = _floats(frame[source if source in frame.columns else "Close"])
    actions = _actions(symbol, frame, days)
    keep = np.isfinite(values["close"])
    if within is not None:
        keep &= (days >= np.datetime64(within[0], "D")) & (days <= np.datetime64(within[1], "D"))
    days = days[keep]
    values = {name: column[keep] for name, column in values.items()}
    volume = values["volume"]
    values["volume"] = np.where(np.isnan(volume), 0.0, volume).round()
    repaired = frame["Repaired?"].to_numpy(dtype=bool)[keep] if "Repaired?" in frame.columns else None  # yfinance's repair ran
    why = implausible_values(values, days)
    if why is not None:  # before the cast: a float volume of 1.5e30 would wrap around to a negative int64
        raise ImplausibleBars(why)
    if len(days) > 1 and not (days[1:] > days[:-1]).all():  # a session twice, or out of order: its last row, by date
        last_of_day = len(days) - 1 - np.unique(days[::-1], return_index=True)[1]
        days = days[last_of_day]
        values = {name: column[last_of_day] for name, column in values.items()}
        repaired = repaired[last_of_day] if repaired is not None else None
    bars = pd.DataFrame({"ticker": symbol, "trade_date": days.astype(object),
                         **{name: values[name] for name in BAR_COLUMNS[2:-1]}, "volume": values["volume"].astype("int64")})
    if repaired is not None:
        bars["repaired"] = repaired.astype("int64")
    return bars, actions


def _floats(column: pd.Series) -> np.ndarray:
    """A column as floats, NaN where it holds nothing or no number."""
    if pd.api.types.is_float_dtype(column.dtype) or pd.api.types.is_integer_dtype(column.dtype):
        return column.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _actions(symbol: str, frame: pd.DataFrame, days: np.ndarray) -> pd.DataFrame:
    dates: list[np.ndarray] = []
    kinds: list[str] = []
    amounts: list[np.ndarray] = []
    for column, kind in (("Dividends", "dividend"), ("Stock Splits", "split")):
        if column in frame.columns:
            values = _floats(frame[column])
            mask = np.nan_to_num(values) != 0
            dates.append(days[mask])
            kinds += [kind] * int(mask.sum())
            amounts.append(values[mask])
    if not kinds:
        return pd.DataFrame(columns=list(ACTION_COLUMNS))
    return pd.DataFrame({"ticker": symbol, "ex_date": np.concatenate(dates).astype(object), "kind": kinds,
                         "value": np.concatenate(amounts)})
