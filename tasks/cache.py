"""The 24 h download cache: normalized bars as JSON files, one per fetch (never pickle).

A file holds the request it answered and when; a lookup takes any fresh file of the symbol
whose range covers the request. Unreadable or truncated files are deleted and treated as
misses, so a corrupt cache costs one refetch, never a crash.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tasks.types import BAR_COLUMNS, FetchRequest, FetchResult

FORMAT_VERSION = 1
DEFAULT_TTL = 24 * 3600.0
_ACTION_COLUMNS = ["ticker", "ex_date", "kind", "value"]


class DownloadCache:
    """Stores and finds downloads under ``root/prices``.

    Args:
        root: the cache directory (``.cache/`` by default at the CLI).
        ttl: seconds a download stays fresh.
        clock: wall clock in seconds since the epoch (injected for tests).
    """

    def __init__(self, root: Path, *, ttl: float = DEFAULT_TTL, clock: Callable[[], float] = time.time) -> None:
        self.dir = Path(root) / "prices"
        self.ttl = ttl
        self._now = clock

    def _files(self, symbol: str) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(self.dir.glob(f"{symbol}__*.json"))

    def get(self, request: FetchRequest) -> FetchResult | None:
        """A fresh cached download covering ``request`` (bars cut to its range), or None."""
        for path in self._files(request.symbol):
            data = self._read(path)
            if data is None:
                continue
            cached = FetchRequest(request.symbol, dt.date.fromisoformat(data["start"]), dt.date.fromisoformat(data["end"]))
            if self._now() - float(data["fetched_at"]) > self.ttl or not cached.covers(request):
                continue
            bars = pd.DataFrame(data["rows"], columns=list(BAR_COLUMNS))
            bars["trade_date"] = pd.to_datetime(bars["trade_date"]).dt.date
            keep = (bars["trade_date"] >= request.start) & (bars["trade_date"] <= request.end)
            actions = pd.DataFrame(data.get("actions", []), columns=_ACTION_COLUMNS)
            if not actions.empty:
                actions["ex_date"] = pd.to_datetime(actions["ex_date"]).dt.date
            return FetchResult(request, bars[keep].reset_index(drop=True), from_cache=True, actions=actions)
        return None

    def put(self, result: FetchResult) -> Path:
        """Write ``result`` atomically (temp file + rename) and return its path."""
        req = result.request
        self.dir.mkdir(parents=True, exist_ok=True)
        rows = result.bars.astype(object).where(result.bars.notna(), None)
        payload = {
            "version": FORMAT_VERSION,
            "symbol": req.symbol,
            "start": req.start.isoformat(),
            "end": req.end.isoformat(),
            "fetched_at": self._now(),
            "rows": [[_plain(v) for v in row] for row in rows.itertuples(index=False)],
            "actions": [[_plain(v) for v in row] for row in result.actions.itertuples(index=False)],
        }
        path = self.dir / f"{req.symbol}__{req.start.isoformat()}__{req.end.isoformat()}.json"
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, separators=(",", ":"))
        os.replace(tmp, path)
        return path

    def _read(self, path: Path) -> dict | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError("unknown cache format")
            for key in ("start", "end", "fetched_at", "rows"):
                if key not in data:
                    raise ValueError(f"missing {key}")
            if any(not isinstance(r, list) or len(r) != len(BAR_COLUMNS) for r in data["rows"]):
                raise ValueError("malformed row")
            return data
        except (OSError, ValueError, TypeError):
            path.unlink(missing_ok=True)
            return None


def _plain(value: object) -> object:
    if isinstance(value, dt.date):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()  # numpy scalar
    return value
