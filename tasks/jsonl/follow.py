"""Following the files while their writer appends: every ``poll`` seconds, load what each file grew
by (from its checkpoint) and pick up new files; a last line without its newline waits for it.
Ctrl+C or SIGTERM stops the run: what was committed stays, a batch in flight rolls back and is
loaded by the next run, and the exit code is 0.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tasks.core.errors import BadInput, Outcome

if TYPE_CHECKING:
    from tasks.jsonl.coverage import Coverage
    from tasks.jsonl.options import IngestOptions
    from tasks.jsonl.totals import IngestTotals


def follow(opts: IngestOptions, *, say: Callable[[str], None],
           load: Callable[[], tuple[IngestTotals, Coverage] | None]) -> Outcome:
    """``load()`` every ``opts.poll`` seconds until interrupted; one line per pass that loaded something."""
    passes = rows = rejected = 0
    files: set[str] = set()
    root, away = opts.sources.root, False
    try:  # from the announcement on, a stop ends the follower the documented way (exit 0)
        say(f"Following {opts.sources.describe()} every {opts.poll:g} s; Ctrl+C or SIGTERM stops (what is committed stays)")
        while True:
            if passes and root is not None and not _usable(root):  # renamed or remounted under us: wait for it
                if not away:
                    gone = "is gone" if not root.is_dir() else "holds no swing/, scalp/ or system/ folder now"
                    say(f"{dt.datetime.now():%H:%M:%S} --root {root} {gone}; waiting for it to come back")
                away = True
                time.sleep(opts.poll)
                continue
            if away:
                say(f"{dt.datetime.now():%H:%M:%S} --root {root} is back")
                away = False
            try:
                outcome = load()
            except BadInput:
                if passes and root is not None and not _usable(root):
                    continue  # it went away during this pass: the check above says so and waits
                raise
            passes += 1
            if outcome is not None:
                totals, coverage = outcome
                loaded = sum(r.loaded for r in totals.results)
                rows += loaded
                rejected += sum(r.rejected for r in totals.results)
                files.update(r.rel for r in totals.results if r.lines)
                if totals.results or totals.failed:
                    now = dt.datetime.now().strftime("%H:%M:%S")
                    grown = sum(1 for r in totals.results if r.lines)
                    say(f"{now} {loaded:,} rows from {grown} file(s)" + "".join(f"; failed {rel}: {err}" for rel, err in totals.failed))
                    details = totals.lines()[1:] + (coverage.lines() if coverage.alarming or totals.failed else [])
                    for line in details:
                        say(f"  {line}")
            time.sleep(opts.poll)
    except KeyboardInterrupt:
        say(f"Stopped following after {passes} pass(es): {rows:,} rows loaded from {len(files)} file(s), {rejected:,} lines rejected; "
            "committed batches are kept")
        return Outcome.DONE


def _usable(root: Path) -> bool:
    """``--root`` is there with at least one of its folders (a folder renamed for a moment, as a
    rotation script may, is waited for like a root that went away)."""
    return root.is_dir() and any((root / folder).is_dir() for folder in ("swing", "scalp", "system"))
