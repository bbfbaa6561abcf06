"""The 24 h download cache: normalized bars as JSON files, one per fetch (never pickle).

A file holds the request it answered and when; a lookup takes any fresh file of the symbol
whose range covers the request. Any bad file (unreadable, truncated, wrong types, impossible
values, a FIFO, a fetch time in the future) is deleted and treated as a miss, so a corrupt cache
costs one refetch, never a crash or a hang.

Files live in 256 folders by a hash of the symbol (``prices/d0/SPY__2025-07-01__2025-07-08.json``):
a lookup lists one small folder, where a single folder of 5,000 tickers' files made each lookup
scan them all. A file that a newer, wider fetch covers is removed when that one is written; files
of the earlier single-folder layout are moved into their folders the first time a cache is used.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pandas as pd

from tasks.core.bar_checks import implausible
from tasks.core.errors import BadInput
from tasks.core.types import ACTION_COLUMNS, BAR_COLUMNS, FetchRequest, FetchResult

FORMAT_VERSION = 2
DEFAULT_TTL = 24 * 3600.0
CLOCK_SKEW_S = 300.0  # a file "fetched" further in the future than this is not trusted (it would never expire)
MAX_FILE_BYTES = 256 * 1024 * 1024  # decades of daily bars are a few MB


def check_cache_dir(root: Path, *, create: bool) -> None:
    """Fail early, before anything is fetched or written, when ``root`` cannot hold the cache.

    With ``create`` (a run that downloads) the folder is made and a probe file written and removed;
    without (a dry run) only what exists is checked.

    Raises:
        BadInput: ``root`` (or its ``prices`` folder) is a file, or cannot be created or written.
    """
    prices = Path(root) / "prices"
    for path in (Path(root), prices):
        if path.exists() and not path.is_dir():
            raise BadInput(f"--cache-dir {root}: {path} is not a directory")
    if not create:
        return
    try:
        prices.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=prices, prefix=".probe-"):
            pass
    except OSError as exc:
        raise BadInput(f"--cache-dir {root}: cannot write there ({exc.strerror or exc})") from None


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
        self._warned = False
        self._layout_checked = False

    def path(self, request: FetchRequest) -> Path:
        """Where the download answering ``request`` is kept."""
        return _folder(self.dir, request.symbol) / f"{request.symbol}__{request.start.isoformat()}__{request.end.isoformat()}.json"

    def _files(self, request: FetchRequest, *, within: bool = False) -> list[Path]:
        """The symbol's files whose named range covers ``request`` (``within``: that ``request`` covers)."""
        self._move_flat_files()
        folder = _folder(self.dir, request.symbol)
        try:
            names = os.listdir(folder)
        except OSError:  # no folder yet (or not readable): nothing cached
            return []
        found = []
        for name in sorted(names):
            named = _named_request(name)
            if named is not None and (request.covers(named) if within else named.covers(request)):  # covers: same symbol too
                found.append(folder / name)
        return found

    def _move_flat_files(self) -> None:
        """Once per cache: files of the single-folder layout into their folders (another process may
        be moving the same ones: a file already gone is skipped)."""
        if self._layout_checked:
            return
        self._layout_checked = True
        try:
            entries = [(e, named) for e in os.scandir(self.dir)
                       if (named := _named_request(e.name)) is not None and not e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for entry, named in entries:
            target = _folder(self.dir, named.symbol)
            try:
                target.mkdir(exist_ok=True)
                os.replace(entry.path, target / entry.name)
            except OSError:
                continue

    def get(self, request: FetchRequest) -> FetchResult | None:
        """A fresh cached download covering ``request`` (bars cut to its range), or None.

        A file that is not a regular file, cannot be read or decoded, holds wrong types, claims a
        fetch time in the future, or holds implausible bars (``core/bar_checks.py``) is deleted
        and counts as a miss: the caller fetches again.
        """
        for path in self._files(request):
            found = self._load(path, request)
            if found is not None:
                return found
        return None

    def _load(self, path: Path, request: FetchRequest) -> FetchResult | None:
        data = self._read(path)
        if data is None:
            return None
        try:
            cached = FetchRequest(request.symbol, dt.date.fromisoformat(data["start"]), dt.date.fromisoformat(data["end"]))
            fetched_at = float(data["fetched_at"])
            if not fetched_at <= self._now() + CLOCK_SKEW_S:
                raise ValueError("fetched in the future")
            if self._now() - fetched_at > self.ttl or not cached.covers(request):
                return None
            bars = pd.DataFrame({c: data["bars"][c] for c in BAR_COLUMNS})
            bars["trade_date"] = pd.to_datetime(bars["trade_date"], format="ISO8601").dt.date
            for col in ("open", "high", "low", "close", "adj_close"):
                bars[col] = bars[col].astype(float)
            why = implausible(bars)
            if why is not None:
                raise ValueError(why)
            bars["volume"] = bars["volume"].astype("int64")
            if "repaired" in data["bars"]:  # downloaded with --repair (kept in a cache of its own)
                bars["repaired"] = pd.Series(data["bars"]["repaired"], dtype="int64")
            actions = pd.DataFrame({c: data["actions"][c] for c in ACTION_COLUMNS})
            if not actions.empty:
                actions["ex_date"] = pd.to_datetime(actions["ex_date"], format="ISO8601").dt.date
                actions["value"] = actions["value"].astype(float)
        except (ValueError, TypeError, KeyError, OverflowError, pd.errors.ParserError):
            path.unlink(missing_ok=True)
            return None
        keep = (bars["trade_date"] >= request.start) & (bars["trade_date"] <= request.end)
        return FetchResult(request, bars[keep].reset_index(drop=True), from_cache=True, actions=actions)

    def put(self, result: FetchResult) -> Path | None:
        """Write ``result`` atomically (temp file + rename) and return its path; None when it could
        not be written (a full disk, a folder gone): the cache is an optimisation, the data it was
        given is stored all the same, and the first such failure of a run is said once. The
        symbol's files whose range this one covers are removed: this one answers all they did."""
        try:
            return self._write(result)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                logging.getLogger("backfill").warning(f"download cache {self.dir}: cannot write ({exc.strerror or exc}); "
                                                      "downloads are stored in the database, just not cached")
            return None

    def _write(self, result: FetchResult) -> Path:
        req = result.request
        path = self.path(req)
        superseded = [p for p in self._files(req, within=True) if p != path]
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "version": FORMAT_VERSION,
            "symbol": req.symbol,
            "start": req.start.isoformat(),
            "end": req.end.isoformat(),
            "fetched_at": self._now(),
            "bars": _columns(result.bars, [*BAR_COLUMNS, *(["repaired"] if "repaired" in result.bars.columns else [])]),
            "actions": _columns(result.actions, ACTION_COLUMNS),
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(msgspec.json.encode(payload))
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)  # gone once renamed; a half-written one must not stay
        for old in superseded:
            try:
                old.unlink()
            except OSError:  # gone already, or open elsewhere (Windows): it expires unread
                pass
        return path

    def _read(self, path: Path) -> dict | None:
        try:
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                raise ValueError("not a regular cache file")  # a FIFO would block the read forever
            data = msgspec.json.decode(path.read_bytes())
            if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
                raise ValueError("unknown cache format")
            for key in ("start", "end", "fetched_at", "bars", "actions"):
                if key not in data:
                    raise ValueError(f"missing {key}")
            bars, actions = data["bars"], data["actions"]
            if not isinstance(bars, dict) or not isinstance(actions, dict):
                raise ValueError("malformed columns")
            lengths = {len(bars.get(c) or []) if isinstance(bars.get(c), list) else -1 for c in BAR_COLUMNS}
            if len(lengths) != 1 or -1 in lengths or any(not isinstance(actions.get(c), list) for c in ACTION_COLUMNS):
                raise ValueError("malformed columns")
            return data
        except (OSError, ValueError, TypeError, msgspec.DecodeError):
            path.unlink(missing_ok=True)
            return None


def _folder(prices: Path, symbol: str) -> Path:
    return prices / hashlib.blake2b(symbol.encode(), digest_size=1).hexdigest()


def _named_request(name: str) -> FetchRequest | None:
    """The request a cache file's name says it answers (``SYMBOL__START__END.json``), or None."""
    if not name.endswith(".json") or name.startswith("."):
        return None
    parts = name[:-5].rsplit("__", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    try:
        return FetchRequest(parts[0], dt.date.fromisoformat(parts[1]), dt.date.fromisoformat(parts[2]))
    except ValueError:
        return None


def _columns(frame: pd.DataFrame, names: tuple[str, ...] | list[str]) -> dict[str, list[object]]:
    """Column-wise plain lists; msgspec writes dates as ISO strings and NaN as null."""
    return {name: frame[name].tolist() if name in frame.columns else [None] * len(frame) for name in names}
