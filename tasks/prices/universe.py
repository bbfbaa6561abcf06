"""What a user's backfill covers: ``--tickers A,B`` or ``--universe``, which is a file (one ticker a
line, or a CSV with a ``ticker`` column), ``spdr:XLK`` (a Select Sector SPDR fund's holdings, from
State Street's daily file as the pipeline reads it) or ``sp500`` (the union of the 11 funds: every
S&P 500 company sits in exactly one of them).
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Callable, Iterator
from pathlib import Path

from tasks.core.db import open_database
from tasks.core.errors import BadInput, RateLimited, SourceError
from tasks.core.tickers import SECTOR_ETFS, parse_ticker_list, validate_ticker
from tasks.sources.budget import RateBudget
from tasks.sources.settings import SourceSettings
from tasks.sources.ssga import BUDGET_NAME as SSGA_BUDGET
from tasks.sources.ssga import SsgaHoldings

SP500 = "sp500"
SPDR_PREFIX = "spdr:"
_COLUMNS = ("ticker", "symbol")


def universe_kind(spec: str) -> str:
    """``spdr``, ``sp500`` or ``file``: what ``--universe SPEC`` names (checked, nothing read).

    Raises:
        BadInput: ``spdr:`` with a fund that is not one of the 11 Select Sector SPDRs, or an empty spec.
    """
    text = spec.strip()
    if not text:
        raise BadInput("--universe: empty (a file, spdr:FUND or sp500)")
    if text.lower() == SP500:
        return "sp500"
    if text.lower().startswith(SPDR_PREFIX):
        fund = text[len(SPDR_PREFIX):].strip().upper()
        if fund not in SECTOR_ETFS:
            raise BadInput(f"--universe {text}: not a Select Sector SPDR fund (one of {', '.join(SECTOR_ETFS)})")
        return "spdr"
    return "file"


def funds_of(spec: str) -> tuple[str, ...]:
    """The SPDR funds whose holdings make up ``spec`` (none for a file)."""
    kind = universe_kind(spec)
    if kind == "sp500":
        return SECTOR_ETFS
    if kind == "spdr":
        return (spec.strip()[len(SPDR_PREFIX):].strip().upper(),)
    return ()


def read_universe_file(path: Path) -> list[str]:
    """The tickers in a universe file, order kept, duplicates dropped: one a line (``#`` starts a
    comment), or a CSV whose header has a ``ticker`` (or ``symbol``) column.

    Raises:
        BadInput: the file cannot be read, holds no ticker, or a line is no ticker (named by its number).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadInput(f"--universe {path}: no such file (a file, spdr:FUND or sp500)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"--universe {path}: cannot read it: {exc}") from None
    lines = [(n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.splitlines(), start=1)]
    lines = [(n, line) for n, line in lines if line]
    if not lines:
        raise BadInput(f"--universe {path}: no tickers in the file")
    header = [c.strip().lower() for c in next(csv.reader([lines[0][1]]))]
    column = next((header.index(c) for c in _COLUMNS if c in header), None)
    raw: list[tuple[int, str]] = []
    if column is not None:
        for n, line in lines[1:]:
            row = next(csv.reader(io.StringIO(line)))
            raw.append((n, row[column] if column < len(row) else ""))
    elif "," in lines[0][1]:
        raise BadInput(f"--universe {path}: a CSV needs a 'ticker' column in its first line (found: {', '.join(header)})")
    else:
        raw = lines
    tickers: list[str] = []
    for n, item in raw:
        try:
            ticker = validate_ticker(item)
        except BadInput as exc:
            raise BadInput(f"--universe {path}, line {n}: {exc}") from None
        if ticker not in tickers:
            tickers.append(ticker)
    if not tickers:
        raise BadInput(f"--universe {path}: no tickers in the file")
    return tickers


def resolve_universe(tickers: list[str] | None, universe: str | None, *,
                     fund_holdings: Callable[[str], list[str]]) -> list[str]:
    """The tickers a run covers: ``tickers``, or the universe's (``fund_holdings(fund)`` gives a fund's
    stocks: cached or downloaded by the caller, who owns the budget and the cache).

    Raises:
        BadInput: neither or both given, or the universe is unusable.
        RateLimited, SourceError: from ``fund_holdings``.
    """
    if (tickers is None) == (universe is None):
        raise BadInput("give the tickers to backfill: --tickers A,B or --universe FILE|spdr:FUND|sp500 (one of them)")
    if tickers is not None:
        return parse_ticker_list(tickers)
    assert universe is not None
    funds = funds_of(universe)
    if not funds:
        return read_universe_file(Path(universe).expanduser())
    out: list[str] = []
    for fund in funds:
        out += [t for t in fund_holdings(fund) if t not in out]
    return out


@contextlib.contextmanager
def sponsor_holdings(settings: SourceSettings, dsn: str, *, url: str | None, per_min: float,
                     dry_run: bool) -> Iterator[Callable[[str], list[str]]]:
    """``fund_holdings`` for ``resolve_universe``: a fund's stocks from State Street's daily file (fresh
    in the cache, else downloaded through the shared ``ssga`` budget, as the pipeline reads them).
    A dry run, which commits nothing (not even the budget's bookkeeping), reads a fresh cached file and
    downloads the ones it lacks unpaced: it cannot plan without them, and they are at most 11 files.

    The callable raises RateLimited (the sponsor answered 429) or BadInput (no usable file: nothing
    can be planned without it).
    """
    budget = None
    if not dry_run:
        open_database(dsn).close()  # the budget's table, on a brand-new database
        budget = RateBudget(dsn, SSGA_BUDGET, per_min=per_min, cooldown_s=settings.rate_limit_sleep)
    sponsor = SsgaHoldings(settings.cache_dir, url=url, budget=budget,
                           max_retries=settings.max_retries, backoff_initial=settings.retry_wait, timeout=max(settings.timeout, 20.0))

    def holdings(fund: str) -> list[str]:
        try:
            got = (sponsor.cached(fund) if dry_run else None) or sponsor.holdings(fund)
        except RateLimited:
            raise
        except SourceError as exc:
            raise BadInput(f"--universe: the holdings of {fund} could not be read: {exc.reason}") from None
        return [str(t) for t in got.holdings["holding"]]

    try:
        yield holdings
    finally:
        if budget is not None:
            budget.close()
