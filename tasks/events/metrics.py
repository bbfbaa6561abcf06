"""Event metrics, computed in bulk for a whole ticker group with numpy (no per-event or
per-ticker Python loop).

Definitions (NYSE sessions; bars = the ticker's stored daily bars in date order):
base bar = the last bar whose session close (16:00 New York, or the early close) is at or before
the event; returns use adj_close k bars after base; excess returns subtract SPY's return between
the same two dates; momentum over 20 bars; volatility = sample std (ddof 1) of the 20 daily log
returns ending at base x sqrt(252); volume ratio = volume of the bar after base / mean volume of
the 20 bars ending at base; reaction compares excess_ret_1d with sigma = volatility / sqrt(252);
trend compares momentum with +-5%.

How: the group's bars are one array sorted by (ticker, date); each event finds its base bar with
one ``searchsorted`` on a composite key (ticker code, close second); windows that would cross
into another ticker's bars are masked.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from tasks.core.calendar import nyse

HORIZONS = (1, 5, 20)
WINDOW = 20
TREND_BAND = 0.05
ANNUALIZE = float(np.sqrt(252))
_KEY = 10**10  # seconds since the epoch stay below this until 2286
METRIC_COLUMNS: tuple[str, ...] = (
    "base_date", "price_at_event", "ret_1d", "ret_5d", "ret_20d", "excess_ret_1d", "excess_ret_5d", "excess_ret_20d",
    "momentum_20d", "volatility_20d", "volume_ratio", "reaction", "trend",
)


@lru_cache(maxsize=1)
def close_table() -> tuple[np.datetime64, np.ndarray]:
    """(first day, close second for every calendar day from then): sessions get their real
    close (early closes included); other days 16:00 New York. Built once per process."""
    cal = nyse()
    days = pd.date_range(cal.first_session, cal.last_session, freq="D")
    fallback = (days + pd.Timedelta(hours=16)).tz_localize("America/New_York").tz_convert("UTC").as_unit("s").asi8
    table = np.asarray(fallback, dtype="int64").copy()
    closes = pd.DatetimeIndex(cal.closes.to_numpy())
    closes = closes.tz_localize("UTC") if closes.tz is None else closes
    pos = (np.asarray(cal.closes.index.to_numpy(), dtype="datetime64[D]") - np.datetime64(days[0].date(), "D")).astype(int)
    table[pos] = closes.as_unit("s").asi8
    return np.datetime64(days[0].date(), "D"), table


def session_close_seconds(dates: np.ndarray) -> np.ndarray:
    """UTC close (seconds since the epoch) of the sessions on ``dates`` (datetime64[D]), early closes included.

    A date that is not an NYSE session (should not happen for source bars) closes at 16:00 New York.
    """
    first, table = close_table()
    offset = (dates.astype("datetime64[D]") - first).astype(int)
    inside = (offset >= 0) & (offset < len(table))
    result = table[np.clip(offset, 0, len(table) - 1)]
    if not inside.all():  # outside the calendar: 16:00 New York
        days = pd.DatetimeIndex(dates[~inside].astype("datetime64[ns]"))
        result[~inside] = (days + pd.Timedelta(hours=16)).tz_localize("America/New_York").tz_convert("UTC").as_unit("s").asi8
    return result


def _windows(values: np.ndarray, fn: str) -> np.ndarray:
    """``fn`` ("std" or "mean") over the WINDOW values ending at each index (NaN before WINDOW-1)."""
    out = np.full(len(values), np.nan)
    if len(values) >= WINDOW:
        view = sliding_window_view(values, WINDOW)
        out[WINDOW - 1 :] = view.std(axis=1, ddof=1) if fn == "std" else view.mean(axis=1)
    return out


def _in_order(bars: pd.DataFrame) -> bool:
    """Sorted by ticker, then strictly by date within each ticker."""
    if not bars["ticker"].is_monotonic_increasing:
        return False
    names = bars["ticker"].to_numpy()
    days = pd.to_datetime(bars["trade_date"]).to_numpy()
    return bool(np.all((names[1:] != names[:-1]) | (days[1:] > days[:-1])))


def value_events(events: pd.DataFrame, bars: pd.DataFrame, spy: pd.Series) -> pd.DataFrame:
    """Metrics for events of many tickers at once.

    Args:
        events: ``ticker`` and aware ``event_time`` columns (any order).
        bars: ``ticker, trade_date, close, adj_close, volume`` (any order; sorted here).
        spy: SPY adj_close indexed by trade_date.

    Returns one row per event, in the order of ``events``, with ``METRIC_COLUMNS``;
    ``base_date`` is None when no bar of the ticker closed at or before the event.

    One function on purpose: every metric is computed at once on aligned numpy arrays of all the
    events (what makes revaluation run at tens of thousands of events a second); split, each part
    would take and return the same dozen arrays.
    """
    n_events = len(events)
    if bars.empty or n_events == 0:
        empty = pd.DataFrame({col: np.full(n_events, None, dtype=object) for col in METRIC_COLUMNS})
        return empty
    out: dict[str, np.ndarray] = {}
    if not _in_order(bars):  # stored bars come sorted (load_group_bars): sorting strings again costs a tenth of a run
        bars = bars.sort_values(["ticker", "trade_date"], kind="stable")
    bars = bars.reset_index(drop=True)
    tickers = pd.Index(pd.unique(bars["ticker"]))
    bar_code = tickers.get_indexer(pd.Index(bars["ticker"]))
    ev_code = tickers.get_indexer(pd.Index(events["ticker"]))
    n = len(bars)
    dates = np.asarray(pd.to_datetime(bars["trade_date"]).to_numpy(), dtype="datetime64[D]")
    close = bars["close"].to_numpy(dtype=float)
    adj = bars["adj_close"].to_numpy(dtype=float)
    adj = np.where(np.isnan(adj), close, adj)
    volume = bars["volume"].to_numpy(dtype=float)
    first = np.searchsorted(bar_code, np.arange(len(tickers)), side="left")  # first bar of each ticker
    end = np.searchsorted(bar_code, np.arange(len(tickers)), side="right")  # one past its last bar

    times = pd.DatetimeIndex(pd.to_datetime(events["event_time"], utc=True)).as_unit("s").asi8
    bar_key = bar_code.astype("int64") * _KEY + session_close_seconds(dates)
    ev_key = np.where(ev_code >= 0, ev_code, 0).astype("int64") * _KEY + times
    base = np.searchsorted(bar_key, ev_key, side="right") - 1
    code = np.where(ev_code >= 0, ev_code, 0)
    lo, hi = first[code], end[code]
    has_base = (ev_code >= 0) & (base >= lo) & (base < hi)
    b = np.where(has_base, base, 0)

    def at(offset: int) -> tuple[np.ndarray, np.ndarray]:
        idx = b + offset
        ok = has_base & (idx >= lo) & (idx < hi)
        return np.clip(idx, 0, n - 1), ok

    spy_days = np.asarray(pd.to_datetime(pd.Series(list(spy.index), dtype=object)).to_numpy(), dtype="datetime64[D]")
    order = np.argsort(spy_days)
    spy_days, spy_values = spy_days[order], spy.to_numpy(dtype=float)[order]

    def spy_at(idx: np.ndarray) -> np.ndarray:
        if len(spy_days) == 0:
            return np.full(len(idx), np.nan)
        wanted = dates[idx]
        pos = np.clip(np.searchsorted(spy_days, wanted), 0, len(spy_days) - 1)
        return np.where(spy_days[pos] == wanted, spy_values[pos], np.nan)

    with np.errstate(divide="ignore", invalid="ignore"):
        spy_base = spy_at(b)
        for k in HORIZONS:
            idx, ok = at(k)
            ret = np.where(ok, adj[idx] / adj[b] - 1, np.nan)
            out[f"ret_{k}d"] = ret
            out[f"excess_ret_{k}d"] = np.where(ok, ret - (spy_at(idx) / spy_base - 1), np.nan)
        back, ok_back = at(-WINDOW)
        out["momentum_20d"] = np.where(ok_back, adj[b] / adj[back] - 1, np.nan)

        # log return into bar i; NaN at each ticker's first bar so no window spans two tickers
        log_ret = np.full(n, np.nan)
        if n > 1:
            log_ret[1:] = np.log(adj[1:] / adj[:-1])
        log_ret[first[first < n]] = np.nan
        vol_by_bar = _windows(log_ret, "std") * ANNUALIZE
        out["volatility_20d"] = np.where(has_base, vol_by_bar[b], np.nan)

        mean_volume = _windows(volume, "mean")
        window_start = np.arange(n) - (WINDOW - 1)
        mean_volume = np.where(window_start >= first[bar_code], mean_volume, np.nan)
        nxt, ok_next = at(1)
        mv = mean_volume[b]
        out["volume_ratio"] = np.where(has_base & ok_next & (mv > 0), volume[nxt] / mv, np.nan)

    sigma = out["volatility_20d"] / ANNUALIZE
    ex1 = out["excess_ret_1d"]
    reaction = np.where(ex1 > sigma, "positive", np.where(ex1 < -sigma, "negative", "neutral")).astype(object)
    reaction[np.isnan(ex1) | np.isnan(sigma)] = None
    mom = out["momentum_20d"]
    trend = np.where(mom > TREND_BAND, "up", np.where(mom < -TREND_BAND, "down", "flat")).astype(object)
    trend[np.isnan(mom)] = None
    base_dates = dates[b].astype(object)
    base_dates[~has_base] = None

    frame = pd.DataFrame({"base_date": base_dates, "price_at_event": np.where(has_base, close[b], np.nan)})
    for name in METRIC_COLUMNS[2:11]:
        frame[name] = out[name]
    frame["reaction"] = reaction
    frame["trend"] = trend
    return frame
