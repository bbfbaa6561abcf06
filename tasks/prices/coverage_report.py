"""Coverage of the stored daily bars: per ticker and table, what is there, what is missing, what is due.

Expected sessions come from the NYSE calendar. A gap is any session of the requested range with no
stored bar: a hole, sessions not fetched yet at the end (then the ticker is also *due*), or sessions
before the ticker's first stored bar (a shorter or interrupted backfill, or a later listing: the
report cannot tell them apart, so it counts them and says how many lie before the first bar).
``--tickers`` selects rows: a ticker gets a row in each table that holds it, and one row of all gaps
when no selected table does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tasks.core.calendar import sessions_between
from tasks.core.db import database_errors
from tasks.core.plots import save_png
from tasks.prices.store import BAR_TABLES


@dataclass
class TickerCoverage:
    table: str
    ticker: str
    first: dt.date | None
    last: dt.date | None
    stored: int  # stored sessions in the requested range
    expected: int  # NYSE sessions in the range from the ticker's first bar on
    gaps: list[dt.date] = field(default_factory=list)
    last_fetch: dt.datetime | None = None
    last_error: str | None = None
    due: bool = False
    before_first: int = 0  # sessions of the range before the first stored one (a later listing, or not backfilled that far)

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("first", "last", "last_fetch"):
            out[key] = out[key].isoformat() if out[key] is not None else None
        out["gaps"] = [d.isoformat() for d in self.gaps]
        return out


@dataclass
class CoverageReport:
    start: dt.date
    end: dt.date
    rows: list[TickerCoverage]
    stored_by_row: list[set[dt.date]] = field(default_factory=list)  # for the heatmap

    @property
    def has_gaps(self) -> bool:
        return any(r.gaps for r in self.rows)


def coverage_report(conn: psycopg.Connection[Any], tables: list[str], start: dt.date, end: dt.date,
                    tickers: list[str] | None = None) -> CoverageReport:
    """Coverage of ``tables`` between ``start`` and ``end`` (every stored ticker, or ``tickers``).

    Raises:
        StoreError: the database could not be read.
    """
    sessions = sessions_between(start, end)
    errors = _last_errors(conn)
    rows: list[TickerCoverage] = []
    stored_sets: list[set[dt.date]] = []
    seen: set[str] = set()
    for table in tables:
        if table not in BAR_TABLES:
            raise ValueError(table)
        query = sql.SQL(
            "SELECT ticker, min(trade_date), max(trade_date), max(fetched_at),"
            " coalesce(array_agg(trade_date ORDER BY trade_date) FILTER (WHERE trade_date BETWEEN %(s)s AND %(e)s), '{{}}')"
            " FROM {} WHERE (%(t)s::text[] IS NULL OR ticker = ANY(%(t)s)) GROUP BY ticker ORDER BY ticker"
        ).format(sql.Identifier(table))
        coverage = _fetch_times(conn, table)
        with database_errors(f"reading {table} failed"):
            found = conn.execute(query, {"s": start, "e": end, "t": tickers}).fetchall()
        for ticker, first, last, fetched, days in found:
            seen.add(ticker)
            have = set(days)
            gaps = [d for d in sessions if d not in have]
            last_fetch = max((t for t in (fetched, coverage.get(ticker)) if t is not None), default=None)
            rows.append(TickerCoverage(table, ticker, first, last, len(have), len(sessions), gaps, last_fetch,
                                       errors.get(ticker), bool(sessions) and last < sessions[-1], sum(1 for d in sessions if d < first)))
            stored_sets.append(have)
    for ticker in tickers or []:
        if ticker not in seen:  # asked for, stored in none of the tables: the whole range is missing and due
            where = tables[0] if len(tables) == 1 else "(in no table)"
            rows.append(TickerCoverage(where, ticker, None, None, 0, len(sessions), list(sessions), None, errors.get(ticker), True,
                                       len(sessions)))
            stored_sets.append(set())
    return CoverageReport(start, end, rows, stored_sets)


def _fetch_times(conn: psycopg.Connection[Any], table: str) -> dict[str, dt.datetime]:
    rows = conn.execute("SELECT ticker, max(fetched_at) FROM price_fetch_coverage WHERE table_name = %s GROUP BY ticker", (table,))
    return {t: at for t, at in rows}


def _last_errors(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Each ticker's latest error, unless a later run stored it successfully."""
    rows = conn.execute(
        "SELECT DISTINCT ON (ticker) ticker, status, detail FROM backfill_run_items"
        " WHERE status IN ('done', 'failed', 'no_data') ORDER BY ticker, updated_at DESC"
    )
    return {t: (detail or "failed") if status == "failed" else f"no data: {detail or 'none'}"
            for t, status, detail in rows if status in ("failed", "no_data")}


def format_table(report: CoverageReport) -> list[str]:
    """Human lines: one per ticker and table, then a totals line."""
    out = [f"Coverage {report.start} .. {report.end} (NYSE sessions)",
           f"{'table':<30} {'ticker':<8} {'first':<10} {'last':<10} {'stored':>7} {'gaps':>5} {'last fetch (UTC)':<17} due  last error"]
    for r in report.rows:
        fetch = r.last_fetch.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") if r.last_fetch else "-"
        shown = ", ".join(d.isoformat() for d in r.gaps[:5]) + (f", +{len(r.gaps) - 5} more" if len(r.gaps) > 5 else "")
        out.append(f"{r.table:<30} {r.ticker:<8} {_d(r.first):<10} {_d(r.last):<10} {r.stored:>3}/{r.expected:<3} {len(r.gaps):>5} "
                   f"{fetch:<17} {'yes' if r.due else 'no ':<4} {r.last_error or ''}")
        if r.gaps:
            out.append(f"{'':<40}missing: {shown}")
        if r.before_first and r.first is not None:
            out.append(f"{'':<40}{r.before_first} of them before its first stored session ({r.first}): a shorter backfill, or a later "
                       "listing")
    holes = sum(len(r.gaps) for r in report.rows)
    out.append(f"{len(report.rows)} ticker(s); {sum(1 for r in report.rows if r.gaps)} with gaps ({holes} missing sessions); "
               f"{sum(1 for r in report.rows if r.due)} due")
    return out


def short_name(table: str) -> str:
    """A row's table as the heatmap labels it: etf, stock, benchmark, or the intraday interval."""
    names = {"etf_daily_bars": "etf", "stock_daily_bars": "stock", "benchmark_daily_bars": "benchmark"}
    return names.get(table, table.removeprefix("intraday_bars ") or table)


def _d(day: dt.date | None) -> str:
    return day.isoformat() if day else "-"


def plot_heatmap(report: CoverageReport, path: Path, *, width_px: int = 1200) -> tuple[int, int]:
    """Draw tickers x sessions (stored: filled, gap: red, before the first bar: blank) to a PNG.

    Returns the image size in pixels (width, height): 1200 wide, 200 + 18 px per row tall.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    sessions = sessions_between(report.start, report.end)
    index = {d: i for i, d in enumerate(sessions)}
    grid = np.zeros((max(1, len(report.rows)), max(1, len(sessions))))
    for row, (cov, have) in enumerate(zip(report.rows, report.stored_by_row, strict=True)):
        for d in have:
            grid[row, index[d]] = 2
        for d in cov.gaps:
            grid[row, index[d]] = 1
    dpi = 100
    height_px = 200 + 18 * len(report.rows)
    fig, ax = plt.subplots(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=ListedColormap(["#ffffff", "#d62728", "#2ca02c"]), vmin=0, vmax=2)
    ax.set_yticks(range(len(report.rows)), [f"{r.ticker} ({short_name(r.table)})" for r in report.rows], fontsize=7)
    step = max(1, len(sessions) // 12)
    ax.set_xticks(range(0, len(sessions), step), [sessions[i].isoformat() for i in range(0, len(sessions), step)], rotation=45,
                  ha="right", fontsize=7)
    ax.set_title(f"Stored bars {report.start} .. {report.end}, a column per NYSE session: green stored, red missing")
    fig.tight_layout()
    try:
        save_png(fig, path, dpi=dpi)
    finally:
        plt.close(fig)
    return width_px, height_px


def intraday_coverage(conn: psycopg.Connection[Any], start: dt.date, end: dt.date, tickers: list[str] | None = None,
                      intervals: list[str] | None = None, *, now: dt.datetime | None = None) -> CoverageReport:
    """Coverage of ``intraday_bars`` per ticker and interval, as for daily bars, counted in
    sessions fetched whole (``intraday_sessions_fetched``). A gap inside Yahoo's window for the
    interval can still be fetched (the ticker is due); one before it cannot, and says so.

    Raises:
        StoreError: the database could not be read.
    """
    from tasks.prices.intraday_plan import first_served

    moment = now or dt.datetime.now(dt.UTC)
    sessions = sessions_between(start, end)
    with database_errors("reading intraday_sessions_fetched failed"):
        found = conn.execute(
            "SELECT ticker, interval, min(session), max(session), max(fetched_at),"
            " coalesce(array_agg(session ORDER BY session) FILTER (WHERE session BETWEEN %(s)s AND %(e)s), '{}')"
            " FROM intraday_sessions_fetched WHERE (%(t)s::text[] IS NULL OR ticker = ANY(%(t)s))"
            " AND (%(i)s::text[] IS NULL OR interval = ANY(%(i)s)) GROUP BY ticker, interval ORDER BY ticker, interval",
            {"s": start, "e": end, "t": tickers, "i": intervals}).fetchall()
    errors = _last_errors(conn)
    rows: list[TickerCoverage] = []
    stored_sets: list[set[dt.date]] = []
    for ticker, interval, first, last, fetched, days in found:
        have = set(days)
        gaps = [d for d in sessions if d not in have]
        edge = first_served(interval, moment)
        lost = sum(1 for d in gaps if d < edge)
        note = f"{lost} missing session(s) before {edge}, beyond Yahoo's {interval} window" if lost else errors.get(ticker)
        rows.append(TickerCoverage(f"intraday_bars {interval}", ticker, first, last, len(have), len(sessions), gaps, fetched,
                                   note, any(d >= edge for d in gaps), sum(1 for d in sessions if d < first)))
        stored_sets.append(have)
    return CoverageReport(start, end, rows, stored_sets)
