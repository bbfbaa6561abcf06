"""yfinance frames → our one bar shape (``types.BAR_COLUMNS``) plus corporate actions.

The raw yfinance frame goes no further than this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.core.bar_checks import implausible
from tasks.core.types import BAR_COLUMNS


class ImplausibleBars(Exception):
    """The source answered with values no market produces (negative, 1e300, a wrapped volume)."""

_RENAME = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Adj Close": "adj_close", "Volume": "volume"}


def normalize_history(symbol: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn a yfinance ``history``/``download`` frame into (bars, actions).

    Rows without a close are dropped (Yahoo sends null rows for halted days); volume becomes
    an integer; ``adj_close`` falls back to close when the source omits it.

    Raises:
        KeyError: a price column is missing (the caller treats this as malformed data).
        ImplausibleBars: a value no market produces (``core/bar_checks.py``): the answer is unusable.
    """
    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        index = index.tz_convert("America/New_York")
    dates = index.date
    bars = pd.DataFrame({"ticker": symbol, "trade_date": dates})
    for source, target in _RENAME.items():
        if source in frame.columns:
            bars[target] = pd.to_numeric(frame[source], errors="coerce").to_numpy()
        elif source == "Adj Close":
            bars[target] = pd.to_numeric(frame["Close"], errors="coerce").to_numpy()
        else:
            raise KeyError(f"column {source!r} missing")
    bars = bars[bars["close"].notna() & np.isfinite(bars["close"])]
    bars["volume"] = bars["volume"].fillna(0).round()
    why = implausible(bars)
    if why is not None:  # before the cast: a float volume of 1.5e30 would wrap around to a negative int64
        raise ImplausibleBars(why)
    bars["volume"] = bars["volume"].astype("int64")
    bars = bars.drop_duplicates(subset=["trade_date"], keep="last").sort_values("trade_date")
    actions = _actions(symbol, frame, index)
    return bars[list(BAR_COLUMNS)].reset_index(drop=True), actions


def _actions(symbol: str, frame: pd.DataFrame, index: pd.DatetimeIndex) -> pd.DataFrame:
    parts = []
    for column, kind in (("Dividends", "dividend"), ("Stock Splits", "split")):
        if column in frame.columns:
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy()
            mask = np.nan_to_num(values) != 0
            if mask.any():
                parts.append(pd.DataFrame({"ticker": symbol, "ex_date": index.date[mask], "kind": kind, "value": values[mask]}))
    if not parts:
        return pd.DataFrame(columns=["ticker", "ex_date", "kind", "value"])
    return pd.concat(parts, ignore_index=True)
