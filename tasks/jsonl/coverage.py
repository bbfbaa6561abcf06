"""Coverage of the scalp data: minutes whose ``coverage_ratio`` is below 0.8 (the source document's
warning level: fewer than 96 of the 120 ticks a 2 Hz feed sends in a minute), per symbol and UTC
day, and critical gaps (at least a whole minute lost) per day and scope.

For a run, only the minutes that run loaded ticks into are judged, except each symbol's newest
stored minute (its writer may still be filling it: an incremental run every 10 minutes would cry
wolf each time); the coverage report judges every minute of its days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tasks.jsonl.queries import CRITICAL_GAP_SECONDS

LOW_COVERAGE = 0.8


@dataclass(frozen=True)
class LowMinutes:
    symbol: str
    day: dt.date
    low: int  # minutes below LOW_COVERAGE
    minutes: int  # minutes judged
    lowest: float


@dataclass(frozen=True)
class CriticalGaps:
    day: dt.date
    scope: str
    count: int
    longest_s: float
    total_s: float


@dataclass
class Coverage:
    days: list[LowMinutes] = field(default_factory=list)
    gaps: list[CriticalGaps] = field(default_factory=list)

    @property
    def minutes(self) -> int:
        return sum(d.minutes for d in self.days)

    @property
    def low(self) -> int:
        return sum(d.low for d in self.days)

    @property
    def alarming(self) -> bool:
        return self.low > 0 or bool(self.gaps)

    def lines(self, limit: int = 10) -> list[str]:
        """The summary's coverage lines."""
        worst = sorted((d for d in self.days if d.low), key=lambda d: (-d.low, d.symbol, d.day))
        shown = ", ".join(f"{d.symbol} {d.day}: {d.low}" for d in worst[:limit]) + (f", ... (+{len(worst) - limit})"
                                                                                      if len(worst) > limit else "")
        out = [f"Coverage: {self.low:,} of {self.minutes:,} minutes below {LOW_COVERAGE}" + (f" ({shown})" if shown else "")]
        if self.gaps:
            out.append(f"Critical gaps (>= {CRITICAL_GAP_SECONDS:.0f} s): " + "; ".join(
                f"{g.day} {g.scope}: {g.count} (longest {g.longest_s:,.0f} s, {g.total_s:,.0f} s in all)" for g in self.gaps[:limit]))
        else:
            out.append(f"Critical gaps (>= {CRITICAL_GAP_SECONDS:.0f} s): none")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"threshold": LOW_COVERAGE, "minutes": self.minutes, "low_minutes": self.low,
                "by_symbol_day": [{"symbol": d.symbol, "day": d.day.isoformat(), "low_minutes": d.low, "minutes": d.minutes,
                                   "lowest_ratio": d.lowest} for d in self.days],
                "critical_gaps": [{"day": g.day.isoformat(), "scope": g.scope, "count": g.count, "longest_seconds": g.longest_s,
                                   "total_seconds": g.total_s} for g in self.gaps]}


_LOW = """
WITH newest AS (SELECT s.symbol, (SELECT max(x.bar_start_at) FROM observer_bars_1m x WHERE x.ticker = s.symbol) AS last
                FROM (SELECT DISTINCT unnest(%(symbols)s::text[]) AS symbol) s)
SELECT b.ticker, (b.bar_start_at AT TIME ZONE 'UTC')::date, count(*) FILTER (WHERE b.coverage_ratio < %(threshold)s), count(*),
       min(b.coverage_ratio)
FROM observer_bars_1m b {newest}
WHERE {where}
GROUP BY 1, 2 ORDER BY 1, 2
"""
_GAPS = """
SELECT (gap_start_at AT TIME ZONE 'UTC')::date, scope, count(*), max(gap_seconds), sum(gap_seconds)
FROM observer_gaps WHERE gap_seconds >= %(critical)s AND {where}
GROUP BY 1, 2 ORDER BY 1, 2
"""


def _collect(conn: psycopg.Connection[Any], low_where: str, gap_where: str, params: dict[str, Any], *, skip_newest: bool) -> Coverage:
    params = {"symbols": [], **params, "threshold": LOW_COVERAGE, "critical": CRITICAL_GAP_SECONDS}
    newest = "JOIN newest n ON n.symbol = b.ticker AND b.bar_start_at < n.last" if skip_newest else ""
    days = [LowMinutes(s, d, int(n), int(m), float(lo)) for s, d, n, m, lo in
            conn.execute(_LOW.format(where=low_where, newest=newest), params)]  # constant SQL
    gaps = [CriticalGaps(d, s, int(n), float(hi), float(total)) for d, s, n, hi, total in
            conn.execute(_GAPS.format(where=gap_where), params)]
    return Coverage(days, gaps)


def run_coverage(conn: psycopg.Connection[Any], minutes: Collection[tuple[str, dt.datetime]], gaps: Sequence[tuple[str, int]]) -> Coverage:
    """What a run loaded: the (symbol, minute) pairs it stored ticks in (the loaders count them), and
    per gap file the first line this run loaded."""
    touched = "(b.ticker, b.bar_start_at) IN (SELECT * FROM unnest(%(symbols)s::text[], %(minutes)s::timestamptz[]))"
    mine = ("(source_file, source_line) IN (SELECT g.source_file, g.source_line FROM observer_gaps g"
            " JOIN unnest(%(gap_files)s::text[], %(gap_firsts)s::int[]) AS f(file, first)"
            " ON g.source_file = f.file AND g.source_line >= f.first)")
    return _collect(conn, touched, mine, {"symbols": [s for s, _ in minutes], "minutes": [m for _, m in minutes],
                                          "gap_files": [r for r, _ in gaps], "gap_firsts": [f for _, f in gaps]}, skip_newest=True)


def range_coverage(conn: psycopg.Connection[Any], first: dt.date, last: dt.date) -> Coverage:
    """Every stored minute and gap from UTC day ``first`` to ``last`` inclusive (the coverage report)."""
    start = dt.datetime.combine(first, dt.time(), dt.UTC)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC)
    return _collect(conn, "b.bar_start_at >= %(start)s AND b.bar_start_at < %(end)s",
                    "gap_start_at >= %(start)s AND gap_start_at < %(end)s", {"start": start, "end": end}, skip_newest=False)
