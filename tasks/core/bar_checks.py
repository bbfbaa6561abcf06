"""What a daily bar may hold, wherever it comes from (the source, the download cache): checked once
here, so an impossible value never reaches the database."""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_PRICE = 1e8  # no listed share trades near this; 1e300 or an overflowed float is garbage
MAX_VOLUME = 2**62  # well inside PostgreSQL's bigint; a float like 1.5e30 would wrap around on cast
PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")


def implausible(bars: pd.DataFrame) -> str | None:
    """Why ``bars`` cannot be stored (the first problem found), or None when every row is plausible.

    Prices must be finite, not negative and below ``MAX_PRICE`` (open, high, low and adj_close may be
    missing; close may not); high must not be below low; volume must be a whole number from 0 to
    ``MAX_VOLUME``.
    """
    if bars.empty:
        return None
    for column in PRICE_COLUMNS:
        values = pd.to_numeric(bars[column], errors="coerce").to_numpy(dtype=float)
        given = ~np.isnan(values) if column != "close" else np.ones(len(values), dtype=bool)
        bad = given & ~(np.isfinite(values) & (values >= 0) & (values < MAX_PRICE))
        if bad.any():
            row = bars.iloc[int(np.argmax(bad))]
            return f"{column} {row[column]!r} on {row['trade_date']} is not a plausible price"
    high = pd.to_numeric(bars["high"], errors="coerce").to_numpy(dtype=float)
    low = pd.to_numeric(bars["low"], errors="coerce").to_numpy(dtype=float)
    inverted = ~np.isnan(high) & ~np.isnan(low) & (high < low)
    if inverted.any():
        row = bars.iloc[int(np.argmax(inverted))]
        return f"high {row['high']!r} below low {row['low']!r} on {row['trade_date']}"
    volume = pd.to_numeric(bars["volume"], errors="coerce").to_numpy(dtype=float)
    bad_volume = ~(np.isfinite(volume) & (volume >= 0) & (volume <= MAX_VOLUME) & (volume == np.round(volume)))
    if bad_volume.any():
        row = bars.iloc[int(np.argmax(bad_volume))]
        return f"volume {row['volume']!r} on {row['trade_date']} is not a plausible share count"
    return None
