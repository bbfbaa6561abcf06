"""The event study: what the market did around each kind of event, from stored bars only.

For an event with base session b (its ``base_date``) and k sessions from it (NYSE sessions),
CAR(k) = (adj[b+k] / adj[b] - 1) - (spy[b+k] / spy[b] - 1), adj being the ticker's stored
adjusted close and spy SPY's. Per event ``source``: how many events, the mean and median excess
return at +1, +5 and +20 sessions (CAR(1), CAR(5), CAR(20)), the shares of positive, negative and
neutral reactions, and CAAR(k) for k = -5 .. +20, the mean CAR over the events that have both
prices at b and b+k, with a 95% band CAAR +/- 1.96 * sample sd / sqrt(n). Nothing is fetched.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from tasks.core.calendar import nyse
from tasks.core.db import connect, database_errors
from tasks.core.plots import save_png
from tasks.core.tickers import BENCHMARK
from tasks.prices.store import ETF_TABLE, STOCK_TABLE

OFFSETS = tuple(range(-5, 21))
HORIZONS = (1, 5, 20)
REACTIONS = ("positive", "negative", "neutral")
Z95 = 1.96


@dataclass
class SourceStudy:
    """The study of one event source."""

    source: str
    events: int
    mean_excess: dict[int, float | None] = field(default_factory=dict)
    median_excess: dict[int, float | None] = field(default_factory=dict)
    reaction_share: dict[str, float | None] = field(default_factory=dict)
    caar: list[tuple[int, float | None, float | None, float | None, int]] = field(default_factory=list)  # k, caar, lo, hi, n

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "events": self.events,
                "mean_excess": {f"+{k}": v for k, v in self.mean_excess.items()},
                "median_excess": {f"+{k}": v for k, v in self.median_excess.items()},
                "reaction_share": self.reaction_share,
                "caar": [{"k": k, "caar": c, "lo": lo, "hi": hi, "n": n} for k, c, lo, hi, n in self.caar]}


def load_events(conn: psycopg.Connection[Any], *, sources: list[str] | None = None, start: dt.date | None = None,
                end: dt.date | None = None) -> pd.DataFrame:
    """The valued events (``ticker, source, base_date, reaction``) the filters select.

    ``start``/``end`` bound the event time's date in New York, both inclusive.
    """
    where = [sql.SQL("valuation_status = 'ok' AND base_date IS NOT NULL")]
    params: dict[str, Any] = {}
    if sources:
        where.append(sql.SQL("source = ANY(%(sources)s)"))
        params["sources"] = sources
    if start is not None:
        where.append(sql.SQL("(event_at AT TIME ZONE 'America/New_York')::date >= %(start)s"))
        params["start"] = start
    if end is not None:
        where.append(sql.SQL("(event_at AT TIME ZONE 'America/New_York')::date <= %(end)s"))
        params["end"] = end
    query = sql.SQL("SELECT ticker, source, base_date, reaction FROM events WHERE {} ORDER BY event_id").format(
        sql.SQL(" AND ").join(where))
    with database_errors("reading the events failed"):
        rows = conn.execute(query, params).fetchall()
    return pd.DataFrame(rows, columns=["ticker", "source", "base_date", "reaction"])


def valued_sources(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Each source with valued events, and how many: what an empty report names as the choices."""
    with database_errors("reading the events failed"):
        rows = conn.execute("SELECT source, count(*) FROM events WHERE valuation_status = 'ok' AND base_date IS NOT NULL"
                            " GROUP BY source ORDER BY source").fetchall()
    return {str(source): int(n) for source, n in rows}


def nothing_matched(asked: list[str] | None, stored: dict[str, int]) -> str:
    """The line an empty report prints instead of an empty table (or an empty JSON list, silently)."""
    if not stored:
        return "No valued events at all: import and value some first (event-valuation --import-csv FILE)."
    unknown = [s for s in asked or [] if s not in stored]
    choices = ", ".join(f"{s} ({n})" for s, n in stored.items())
    if unknown:
        return f"No valued events of source {', '.join(unknown)}; the sources with valued events: {choices}."
    return f"No valued events in that range; the sources with valued events: {choices}."


def cumulative_abnormal_returns(conn: psycopg.Connection[Any], events: pd.DataFrame) -> np.ndarray:
    """CAR(k) per event (rows) and k in ``OFFSETS`` (columns); NaN where a price is not stored."""
    if events.empty:
        return np.empty((0, len(OFFSETS)))
    sessions = nyse().sessions
    days = np.asarray(sessions.to_numpy(dtype="datetime64[ns]"), dtype="datetime64[D]")
    base = np.searchsorted(days, np.asarray(pd.to_datetime(events["base_date"]).to_numpy(), dtype="datetime64[D]"))
    at = np.clip(base[:, None] + np.array(OFFSETS)[None, :], 0, len(days) - 1)
    in_calendar = (base[:, None] + np.array(OFFSETS)[None, :] >= 0) & (base[:, None] + np.array(OFFSETS)[None, :] < len(days))
    dates = days[at]
    first, last = pd.Timestamp(dates.min()).date(), pd.Timestamp(dates.max()).date()
    adj = _adjusted(conn, STOCK_TABLE, sorted(set(events["ticker"])), first, last)
    spy = _adjusted(conn, ETF_TABLE, [BENCHMARK], first, last)
    tickers = np.repeat(events["ticker"].to_numpy(), len(OFFSETS))
    flat = pd.MultiIndex.from_arrays([tickers, dates.ravel()])
    stock = adj.reindex(flat).to_numpy(dtype=float).reshape(dates.shape)
    bench = spy.reindex(pd.MultiIndex.from_arrays([np.full(dates.size, BENCHMARK), dates.ravel()])).to_numpy(dtype=float)
    bench = bench.reshape(dates.shape)
    zero = OFFSETS.index(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        car = (stock / stock[:, [zero]] - 1) - (bench / bench[:, [zero]] - 1)
    return np.where(in_calendar, car, np.nan)


def _adjusted(conn: psycopg.Connection[Any], table: str, tickers: list[str], first: dt.date, last: dt.date) -> pd.Series:
    """Stored adj_close indexed by (ticker, trade_date as datetime64[D])."""
    query = sql.SQL("SELECT ticker, trade_date, coalesce(adj_close, close) FROM {} WHERE ticker = ANY(%s)"
                    " AND trade_date BETWEEN %s AND %s").format(sql.Identifier(table))
    with database_errors(f"reading {table} failed"):
        rows = conn.execute(query, (tickers, first, last)).fetchall()
    if not rows:
        return pd.Series(dtype=float, index=pd.MultiIndex.from_arrays([[], np.array([], dtype="datetime64[D]")]))
    frame = pd.DataFrame(rows, columns=["ticker", "day", "adj"])
    index = pd.MultiIndex.from_arrays([frame["ticker"].to_numpy(), np.asarray(pd.to_datetime(frame["day"]).to_numpy(),
                                                                               dtype="datetime64[D]")])
    return pd.Series(frame["adj"].astype(float).to_numpy(), index=index)


def study(events: pd.DataFrame, cars: np.ndarray) -> list[SourceStudy]:
    """One ``SourceStudy`` per source (sorted by name) from the events and their CARs."""
    out = []
    for source in sorted(set(events["source"])):
        mask = (events["source"] == source).to_numpy()
        rows, reactions = cars[mask], events.loc[mask, "reaction"]
        result = SourceStudy(source, int(mask.sum()))
        for k in HORIZONS:
            values = rows[:, OFFSETS.index(k)]
            values = values[~np.isnan(values)]
            result.mean_excess[k] = float(values.mean()) if len(values) else None
            result.median_excess[k] = float(np.median(values)) if len(values) else None
        known = reactions.dropna()
        for reaction in REACTIONS:
            result.reaction_share[reaction] = float((known == reaction).mean()) if len(known) else None
        for i, k in enumerate(OFFSETS):
            values = rows[:, i]
            values = values[~np.isnan(values)]
            n = len(values)
            if n == 0:
                result.caar.append((k, None, None, None, 0))
                continue
            mean = float(values.mean())
            half = Z95 * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
            result.caar.append((k, mean, mean - half if n > 1 else None, mean + half if n > 1 else None, n))
        out.append(result)
    return out


def run_study(conn: psycopg.Connection[Any], *, sources: list[str] | None = None, start: dt.date | None = None,
              end: dt.date | None = None) -> list[SourceStudy]:
    """The whole study from the database (see module doc)."""
    events = load_events(conn, sources=sources, start=start, end=end)
    return study(events, cumulative_abnormal_returns(conn, events))


def study_markdown(dsn: str) -> str:
    """The study of every valued event as markdown (the valuation flow leaves it as an artifact)."""
    with connect(dsn) as conn:
        studies = run_study(conn)
    if not studies:
        return "## Event study\n\nNo valued events yet.\n"
    return "## Event study (excess returns vs SPY, from stored bars)\n\n" + "\n".join(format_table(studies)) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.2%}"


TABLE_HEADER = ("source", "events", "mean +1", "mean +5", "mean +20", "median +1", "median +5", "median +20", "positive",
                "negative", "neutral", "CAAR +20 (95% band)")


def table_rows(studies: list[SourceStudy]) -> list[list[str]]:
    """The per-source table's cells, a row per source (``TABLE_HEADER`` names the columns)."""
    rows = []
    for s in studies:
        share = [("-" if s.reaction_share[r] is None else f"{s.reaction_share[r]:.0%}") for r in REACTIONS]
        k, caar, lo, hi, n = s.caar[OFFSETS.index(20)]
        band = f"{_pct(caar)} ({_pct(lo)} .. {_pct(hi)}, n={n})"
        rows.append([s.source, f"{s.events:,}", *(_pct(s.mean_excess[h]) for h in HORIZONS),
                     *(_pct(s.median_excess[h]) for h in HORIZONS), *share, band])
    return rows


def format_table(studies: list[SourceStudy]) -> list[str]:
    """The per-source table as markdown (for a file or a pipe; a terminal gets ``terminal_table``)."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|---|" + "---:|" * (len(TABLE_HEADER) - 2) + "---|"]
    return lines + ["| " + " | ".join(row) + " |" for row in table_rows(studies)]


def terminal_table(studies: list[SourceStudy]) -> Any:
    """The same table for a terminal, turned: a row per figure and a column per source, which fits a
    window where the markdown's 190 columns ran off it (rich folds what is still too wide)."""
    from rich import box
    from rich.table import Table

    table = Table(title="Excess returns after each kind of event (k sessions after it)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    rows = table_rows(studies)
    table.add_column("", justify="left", no_wrap=True)
    for row in rows:
        table.add_column(row[0], justify="right", overflow="fold")
    for index, name in enumerate(TABLE_HEADER[1:], start=1):
        table.add_row(name, *(row[index] for row in rows))
    return table


def plot(studies: list[SourceStudy], path: Path) -> None:
    """CAAR(k) per source with its 95% band, k = -5 .. +20, to a PNG.

    Raises:
        BadInput: the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=110)
    for s in studies:
        ks = np.array([k for k, *_ in s.caar], dtype=float)
        caar = np.array([np.nan if c is None else c for _, c, *_ in s.caar], dtype=float)
        lo = np.array([np.nan if v is None else v for _, _, v, _, _ in s.caar], dtype=float)
        hi = np.array([np.nan if v is None else v for _, _, _, v, _ in s.caar], dtype=float)
        (line,) = ax.plot(ks, caar * 100, marker="o", markersize=3, label=f"{s.source} (n={s.events:,})")
        ax.fill_between(ks, lo * 100, hi * 100, color=line.get_color(), alpha=0.15)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.axvline(0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel("sessions from the base session (k)")
    ax.set_ylabel("CAAR vs SPY, %")
    ax.set_title("Cumulative average abnormal return around events, with 95% bands")
    if studies:  # an empty report draws empty axes, without matplotlib's "no artists" warning
        ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        save_png(fig, path)
    finally:
        plt.close(fig)
