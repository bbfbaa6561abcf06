"""What an ingestion run (or one pass of a follower) did: its files' results, progress and summary lines."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tasks.core.db import connect, database_errors
from tasks.core.display import format_eta
from tasks.jsonl.coverage import Coverage, run_coverage
from tasks.jsonl.files import FilePlan
from tasks.jsonl.load import FileResult


@dataclass
class IngestTotals:
    plans: list[FilePlan]
    results: list[FileResult] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def bytes_total(self) -> int:
        return sum(p.bytes_to_load for p in self.plans)

    def progress(self) -> tuple[str, str]:
        done = sum(r.bytes_read for r in self.results)
        lines = sum(r.lines for r in self.results)
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        eta = format_eta((self.bytes_total - done) / (done / elapsed)) if done and done < self.bytes_total else ""
        return f"{len(self.results)}/{len(self.to_load)} files, {lines:,} lines, {lines / elapsed:,.0f} lines/s", eta

    @property
    def to_load(self) -> list[FilePlan]:
        return [p for p in self.plans if p.action != "skip"]

    def coverage(self, dsn: str) -> Coverage:
        """Coverage of what this run loaded (each file from the first line it added)."""
        start = {p.file.rel: (p.start_line if p.action == "append" else 0) for p in self.plans}
        keys = {p.file.rel: p.file.key for p in self.plans}
        minutes = {m for r in self.results for m in r.minutes}
        gaps = [(keys[r.rel], start.get(r.rel, 0) + 1) for r in self.results if r.lines and r.kind == "gap"]
        if not minutes and not gaps:
            return Coverage()
        with connect(dsn, autocommit=True) as conn, database_errors("the coverage check failed (what loaded is kept)"):
            return run_coverage(conn, sorted(minutes), gaps)

    def lines(self) -> list[str]:
        count = {a: sum(1 for p in self.plans if p.action == a) for a in ("new", "append", "reload", "skip")}
        loaded = sum(r.loaded for r in self.results)
        rejected = sum(r.rejected for r in self.results)
        elapsed = time.perf_counter() - self.started
        rows = sum(r.lines for r in self.results)
        out = [f"JSONL: {len(self.plans)} files ({count['new']} new, {count['append']} grown, {count['reload']} reloaded, "
               f"{count['skip']} unchanged); {loaded:,} rows loaded, {rejected:,} lines rejected, {len(self.failed)} files failed; "
               f"{rows / max(elapsed, 1e-9):,.0f} lines/s"]
        copies = sum(r.copies for r in self.results)
        if copies:
            out.append(f"{copies:,} ticks were already stored from other files (copies or renamed files): stored once, kept as copies")
        kept = {r.rel: r.kept for r in self.results if r.kept is not None}
        for plan in self.plans:
            if plan.action == "reload":
                out.append(f"Reloaded ({plan.why}): {plan.file.rel}")
                if plan.file.rel in kept:
                    rows, kept_as = kept[plan.file.rel]
                    what, then = (("ticks", "a line that repeats a kept tick is a copy, not a second row") if plan.file.kind == "scalp"
                                  else ("bar versions", "a bar its lines carry now wins over the kept version"))
                    out.append(f"  the {rows:,} {what} its earlier content stored are kept, as {kept_as}; its lines now load from "
                               f"the start ({then})")
        for result in self.results:
            for line, reason in result.rejects[:10]:
                out.append(f"Rejected {result.rel}:{line}: {reason}")
            if result.incomplete_tail:
                out.append(f"{result.rel} ends in an incomplete line: left for the next run")
        for result in self.results:
            if result.retries:
                out.append(f"{result.rel}: loaded after {result.retries} database error(s), from its checkpoint")
        for rel, error in self.failed:
            out.append(f"Failed {rel}: {error}")
        return out
