"""The pipeline's stages by name, a run's options and a stage's outcome."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tasks.core.calendar import last_closed_session, sessions_back
from tasks.core.errors import BadInput, Outcome, RateLimited
from tasks.pipeline.retention import RetentionWindows
from tasks.sources.settings import SourceSettings

STAGES = ("etf-ohlc", "etf-holdings", "trending", "stock-history", "allocation")  # the document's five, in order
EXTRA_STAGES = ("retention",)  # run only when named (its own daily deployment)
ALL_STAGES = STAGES + EXTRA_STAGES
BENCHMARKS = ("SPY", "QQQ")  # benchmark_daily_bars


@dataclass(frozen=True)
class PipelineOptions:
    stages: tuple[str, ...] = STAGES
    as_of: dt.date | None = None
    days: int = 30
    top_sectors: int = 3
    dry_run: bool = False
    holdings_rate: float = 20.0  # requests/min to the sponsor's site (the ``ssga`` budget)
    holdings_url: str | None = None  # the sponsor files' address template (None: State Street's own)
    retention: RetentionWindows = field(default_factory=RetentionWindows)
    source: SourceSettings = field(default_factory=lambda: SourceSettings(delay=1.0))

    def session(self) -> dt.date:
        """The as-of session: the last closed one, or the last session on or before ``as_of``."""
        return sessions_back(1, self.as_of)[-1] if self.as_of else last_closed_session()


@dataclass
class StageOutcome:
    stage: str
    code: Outcome = Outcome.DONE
    lines: list[str] = field(default_factory=list)
    rate_limited: RateLimited | None = None
    said: set[int] = field(default_factory=set)  # indexes of ``lines`` the step printed itself (the backfills' summaries)


def parse_stages(text: str) -> tuple[str, ...]:
    """``"all"`` (the five), names or numbers (``"trending,5"``, ``retention`` or 6), returned in order.

    Raises:
        BadInput: an unknown stage.
    """
    if text.strip().lower() == "all":
        return STAGES
    chosen = set()
    for part in (p.strip().lower() for p in text.split(",") if p.strip()):
        if part.isdigit() and 1 <= int(part) <= len(ALL_STAGES):
            chosen.add(ALL_STAGES[int(part) - 1])
        elif part in ALL_STAGES:
            chosen.add(part)
        else:
            raise BadInput(f"unknown stage {part!r}: choose from {', '.join(ALL_STAGES)} (or 1-{len(ALL_STAGES)}, or all)")
    if not chosen:
        raise BadInput("--stages names no stage")
    return tuple(s for s in ALL_STAGES if s in chosen)
