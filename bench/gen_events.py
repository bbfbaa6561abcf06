"""Generate a skewed event CSV: N events over T tickers (Zipf-like: a few tickers with hundreds).

    uv run python -m bench.gen_events --events 136954 --tickers 5000 --out events.csv
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
from collections.abc import Sequence
from pathlib import Path

START = dt.datetime(2023, 1, 3, tzinfo=dt.UTC)
END = dt.datetime(2025, 6, 30, tzinfo=dt.UTC)


def ticker_names(count: int) -> list[str]:
    """Distinct 4-letter symbols, deterministic."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    names: list[str] = []
    i = 0
    while len(names) < count:
        n = i * 7919 + 17
        name = "".join(letters[(n // 26**k) % 26] for k in range(4))
        if name not in names and name != "SPY":
            names.append(name)
        i += 1
    return names


def event_counts(events: int, tickers: int, skew: float = 0.4) -> list[int]:
    weights = [1 / (rank ** skew) for rank in range(1, tickers + 1)]
    total = sum(weights)
    counts = [max(1, int(events * w / total)) for w in weights]
    diff = events - sum(counts)
    i = 0
    while diff != 0:  # adjust to the exact total, one event at a time
        step = 1 if diff > 0 else -1
        if counts[i % tickers] + step >= 1:
            counts[i % tickers] += step
            diff -= step
        i += 1
    return counts


def generate(path: Path, events: int, tickers: int, seed: int = 7) -> dict[str, int]:
    rng = random.Random(seed)
    span = (END - START).total_seconds()
    counts = event_counts(events, tickers)
    names = ticker_names(tickers)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("ticker,event_time,source\n")
        for name, count in zip(names, counts, strict=True):
            for j in range(count):
                when = START + dt.timedelta(seconds=int(rng.random() * span))
                fh.write(f"{name},{when.isoformat(sep=' ')},gen{j}\n")
    return dict(zip(names, counts, strict=True))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=136_954)
    p.add_argument("--tickers", type=int, default=5_000)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    counts = generate(args.out, args.events, args.tickers)
    print(f"{sum(counts.values())} events over {len(counts)} tickers; max {max(counts.values())} per ticker -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
