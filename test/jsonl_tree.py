"""A generated JSONL tree with known contents (used by the tests and the ingestion benchmark)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

START = dt.datetime(2026, 1, 22, 0, 30, tzinfo=dt.UTC)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def tick(symbol: str, when: dt.datetime, i: int) -> dict:
    price = 70000 + (i * 37 + sum(map(ord, symbol))) % 500
    return {"ts": iso(when + dt.timedelta(milliseconds=3)), "event_time": iso(when), "symbol": symbol,
            "bid_price": price - 5, "ask_price": price + 5, "bid_size": 100 + i % 7, "ask_size": 50 + i % 5,
            "last_price": price, "volume": 1 + i % 10, "session_id": "track_b_session", "mitigation_level": 0,
            "quality_flag": "normal"}


def swing(symbol: str, when: dt.datetime, i: int) -> dict:
    base = 50000 + (i * 113 + sum(map(ord, symbol))) % 3000
    return {"ts": iso(when), "session": "track_a_session", "dataset": "track_a_swing", "market": "kr_stocks", "symbol": symbol,
            "price": {"open": base, "high": base + 200, "low": base - 100, "close": base + 50}, "volume": 1000 + i,
            "bid_price": base + 40, "ask_price": base + 60, "source": "kis"}


@dataclass
class Tree:
    root: Path
    ticks: dict[str, list[dict]] = field(default_factory=dict)  # file → records, in line order
    swings: dict[str, list[dict]] = field(default_factory=dict)
    gaps: dict[str, list[dict]] = field(default_factory=dict)

    def all_ticks(self) -> list[dict]:
        return [t for recs in self.ticks.values() for t in recs]


def write(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, separators=(",", ":")) + "\n")


def make_tree(root: Path, *, symbols: tuple[str, ...] = ("005930", "000660"), files: int = 2, minutes_per_file: int = 3,
              missing_every: int = 7) -> Tree:
    """Scalp files of 2 Hz ticks (every ``missing_every``-th half-second missing, so coverage < 1),
    10-minute swing polls, and a gap ledger."""
    tree = Tree(root)
    i = 0
    for f in range(files):
        start = START + dt.timedelta(minutes=f * minutes_per_file)
        name = f"scalp/{start:%Y%m%d_%H%M}.jsonl"
        recs = []
        for half in range(minutes_per_file * 120):
            when = start + dt.timedelta(milliseconds=500 * half + 120)
            for s in symbols:
                i += 1
                if i % missing_every == 0:
                    continue
                recs.append(tick(s, when, i))
        tree.ticks[name] = recs
        write(root / name, recs)
        sname = f"swing/{start:%Y%m%d_%H%M}.jsonl"
        tree.swings[sname] = [swing(s, start + dt.timedelta(minutes=10 * k), f * 10 + k) for s in symbols for k in range(3)]
        write(root / sname, tree.swings[sname])
    gname = f"system/gap_{START:%Y%m%d}.jsonl"
    tree.gaps[gname] = [
        {"timestamp": iso(START + dt.timedelta(minutes=m)), "gap_start_ts": iso(START + dt.timedelta(minutes=m)),
         "gap_end_ts": iso(START + dt.timedelta(minutes=m, seconds=secs)), "gap_seconds": secs, "scope": scope,
         "reason": "ws_disconnect", "session_id": "track_b_session"}
        for m, secs, scope in ((1, 5, "scalp"), (3, 90, "scalp"), (4, 120, "swing"), (30 * 60, 61, "scalp"))
    ]
    write(root / gname, tree.gaps[gname])
    return tree


def expected_1m_bars(ticks: list[dict]) -> dict[tuple[str, dt.datetime], dict]:
    """The 1-minute bars computed the obvious way (independently of the SQL)."""
    out: dict[tuple[str, dt.datetime], list[dict]] = {}
    for t in ticks:
        when = dt.datetime.fromisoformat(t["event_time"].replace("Z", "+00:00"))
        out.setdefault((t["symbol"], when.replace(second=0, microsecond=0)), []).append(t)
    bars = {}
    for key, items in out.items():
        items.sort(key=lambda t: t["event_time"])
        prices = [t["last_price"] for t in items]
        bars[key] = {"open": prices[0], "high": max(prices), "low": min(prices), "close": prices[-1],
                     "volume": sum(t["volume"] for t in items), "tick_count": len(items), "coverage_ratio": len(items) / 120}
    return bars
