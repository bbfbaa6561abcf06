"""Event valuation with default flags against a Yahoo that answers 429 above one request a second.

The default budget is the source document's limits (60/min,2000/h): requests spaced 1.8 s apart at
the binding 2,000 an hour. Measured: how many 429s the fake gave (the target is none), the wall time
against the budget's own floor (the run's requests, spaced at the binding window, measured here from
the fake's log), and the fake's log window by window (never more than one request in a second).

    uv run python -m bench.default_budget [--tickers 120]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

from bench.common import fresh_database, run_module, start_server, write_section
from bench.gen_events import generate
from tasks.sources.budget import DEFAULT_RATE, binding_window, parse_rate
from test.fake_yahoo import FakeYahoo
from test.rate_helpers import most_in_window

AS_OF = "2025-09-30"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tickers", type=int, default=120)
    p.add_argument("--latency", type=float, default=0.05)
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    csv = work / "events.csv"
    generate(csv, args.tickers * 3, args.tickers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = start_server(work)
    dsn = fresh_database(server.get_uri())
    try:
        with FakeYahoo(latency=args.latency, max_per_second=1) as fake:
            env = {**os.environ, **fake.env(), "PYTHONWARNINGS": "ignore", "DATABASE_URL": dsn, "BACKFILL_ORCHESTRATE": "plain"}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env.pop("YAHOO_RATE", None)  # the default budget, as a new user has it
            imported = run_module("flows.event_valuation", ["--import-csv", str(csv), "--import-only", "--cache-dir",
                                                            str(work / "cache")], env)
            assert imported.code == 0, imported.stderr[-2000:]
            fake.reset_log()
            run = run_module("flows.event_valuation", ["--end", AS_OF, "--cache-dir", str(work / "cache"), "--fundamentals", "none"],
                             env)
            log = list(fake.log)
    finally:
        server.cleanup()
    limited = sum(1 for e in log if e.status == 429)
    charts = sum(1 for e in log if e.symbol)
    spacing = 60.0 / parse_rate(DEFAULT_RATE)
    floor = (len(log) - 1) * spacing  # every request the run made, evenly spaced at the binding window
    worst = most_in_window([e.at for e in log], 1.0)
    print(f"exit {run.code}; {len(log)} requests ({charts} chart), {limited} answered 429; most in any 1 s: {worst}")
    print(f"wall {run.seconds:.1f} s; the budget's floor {floor:.1f} s ({len(log)} requests at {binding_window(DEFAULT_RATE).text}): "
          f"{run.seconds / floor:.3f}x")
    write_section("Default budget against a Yahoo that allows 1 request a second", f"""
`bench/default_budget.py`: event valuation of {args.tickers} tickers ({args.tickers * 3} events) with **default flags**
(`--rate {DEFAULT_RATE}`), against the fake Yahoo answering 429 to any request beyond one in the last second
(attempts counted), {args.latency * 1000:.0f} ms latency. The floor is the budget's own: the requests the run made,
spaced {spacing:.1f} s apart at the binding window ({binding_window(DEFAULT_RATE).text}).

| | measured |
|---|---:|
| exit code | {run.code} |
| requests (chart requests) | {len(log)} ({charts}) |
| answered 429 | **{limited}** |
| most requests in any 1 s window | {worst} |
| wall time | {run.seconds:.1f} s |
| the budget's floor | {floor:.1f} s |
| wall / floor | **{run.seconds / floor:.3f}x** (target: within 1.10x) |
""")
    return 0 if run.code == 0 and limited == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
