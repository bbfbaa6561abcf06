"""Event metrics, computed in bulk per ticker with numpy (no per-event Python loop).

Definitions (NYSE sessions; bars = the ticker's stored daily bars in date order):
base bar = the last bar whose session close (16:00 New York, or the early close) is at or before
the event; returns use adj_close k bars after base; excess returns subtract SPY's return between
the same two dates; momentum over 20 bars; volatility = sample std (ddof 1) of the 20 daily log
returns ending at base x sqrt(252); volume ratio = volume of the bar after base / mean volume of
the 20 bars ending at base; reaction compares excess_ret_1d with sigma = volatility / sqrt(252);
trend compares momentum with +-5%.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tasks.calendar import nyse

HORIZONS = (1, 5, 20)
WINDOW = 20
TREND_BAND = 0.05
ANNUALIZE = float(np.sqrt(252))
METRIC_COLUMNS: tuple[str, ...] = (
    "base_date", "price_at_event", "ret_1d", "ret_5d", "ret_20d", "excess_ret_1d", "excess_ret_5d", "excess_ret_20d",
    "momentum_20d", "volatility_20d", "volume_ratio", "reaction", "trend",
)


def session_closes(dates: pd.Series | np.ndarray) -> np.ndarray:
    """UTC close instants (ns since epoch) of the sessions on ``dates`` (early closes included).

    A date that is not an NYSE session (should not happen for source bars) closes at 16:00 New York.
    """
    index = pd.DatetimeIndex(pd.to_datetime(pd.Series(dates)))
    closes = nyse().closes
    found = closes.reindex(index)
    fallback = (index + pd.Timedelta(hours=16)).tz_localize("America/New_York").tz_convert("UTC")
    values = pd.DatetimeIndex(found.to_numpy()).tz_localize("UTC") if found.dt.tz is None else pd.DatetimeIndex(found)
    values = values.where(~found.isna().to_numpy(), fallback)
    return np.asarray(values.as_unit("ns").asi8, dtype="int64")


def value_events(event_times: pd.Series, bars: pd.DataFrame, spy: pd.Series) -> pd.DataFrame:
    """Metrics for each event of one ticker.

    Args:
        event_times: aware timestamps of the events (any order).
        bars: the ticker's bars with trade_date, close, adj_close, volume (date-ordered).
        spy: SPY adj_close indexed by trade_date.

    Returns one row per event (same order) with ``METRIC_COLUMNS``; ``base_date`` is NaT when no
    bar closed at or before the event.
    """
    n_events = len(event_times)
    out = pd.DataFrame(index=range(n_events), columns=list(METRIC_COLUMNS), dtype=object)
    if bars.empty or n_events == 0:
        return out
    dates = pd.to_datetime(bars["trade_date"]).to_numpy()
    close = bars["close"].to_numpy(dtype=float)
    adj = bars["adj_close"].to_numpy(dtype=float)
    adj = np.where(np.isnan(adj), close, adj)
    volume = bars["volume"].to_numpy(dtype=float)
    n = len(adj)

    times = pd.DatetimeIndex(pd.to_datetime(event_times, utc=True)).as_unit("ns").asi8
    base = np.searchsorted(session_closes(bars["trade_date"]), times, side="right") - 1
    has_base = base >= 0
    b = np.where(has_base, base, 0)

    def at(offset: int) -> tuple[np.ndarray, np.ndarray]:
        idx = b + offset
        ok = has_base & (idx >= 0) & (idx < n)
        return np.clip(idx, 0, n - 1), ok

    spy_dates = pd.DatetimeIndex(pd.to_datetime(pd.Series(spy.index)))
    spy_values = spy.to_numpy(dtype=float)

    def spy_at(idx: np.ndarray) -> np.ndarray:
        pos = spy_dates.get_indexer(pd.DatetimeIndex(dates[idx]))
        return np.where(pos >= 0, spy_values[np.clip(pos, 0, max(len(spy_values) - 1, 0))] if len(spy_values) else np.nan, np.nan)

    spy_base = spy_at(b) if len(spy_values) else np.full(n_events, np.nan)
    cols: dict[str, np.ndarray] = {}
    for k in HORIZONS:
        idx, ok = at(k)
        ret = np.where(ok, adj[idx] / adj[b] - 1, np.nan)
        spy_k = spy_at(idx) if len(spy_values) else np.full(n_events, np.nan)
        cols[f"ret_{k}d"] = ret
        cols[f"excess_ret_{k}d"] = np.where(ok, ret - (spy_k / spy_base - 1), np.nan)

    back, ok_back = at(-WINDOW)
    cols["momentum_20d"] = np.where(ok_back, adj[b] / adj[back] - 1, np.nan)

    log_returns = pd.Series(np.log(adj[1:] / adj[:-1]))  # element i-1 = return into bar i
    vol_by_bar = np.concatenate([[np.nan], log_returns.rolling(WINDOW).std(ddof=1).to_numpy()]) * ANNUALIZE
    cols["volatility_20d"] = np.where(has_base, vol_by_bar[b], np.nan)

    mean_volume = pd.Series(volume).rolling(WINDOW).mean().to_numpy()
    nxt, ok_next = at(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ok_next & (mean_volume[b] > 0), volume[nxt] / mean_volume[b], np.nan)
    cols["volume_ratio"] = np.where(has_base, ratio, np.nan)

    sigma = cols["volatility_20d"] / ANNUALIZE
    ex1 = cols["excess_ret_1d"]
    known = ~np.isnan(ex1) & ~np.isnan(sigma)
    reaction = np.where(ex1 > sigma, "positive", np.where(ex1 < -sigma, "negative", "neutral")).astype(object)
    reaction[~known] = None
    mom = cols["momentum_20d"]
    trend = np.where(mom > TREND_BAND, "up", np.where(mom < -TREND_BAND, "down", "flat")).astype(object)
    trend[np.isnan(mom)] = None

    base_dates = pd.DatetimeIndex(dates[b]).date.astype(object)
    base_dates[~has_base] = None
    out["base_date"] = base_dates
    out["price_at_event"] = np.where(has_base, close[b], np.nan)
    for name, values in cols.items():
        out[name] = values
    out["reaction"] = reaction
    out["trend"] = trend
    return out
