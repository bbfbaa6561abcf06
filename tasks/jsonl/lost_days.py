"""Days of ticks that went missing outside the loader: a day partition dropped or detached by hand.

Each scalp file's checkpoint names the UTC days its ticks fell on (``tick_days``); retention takes a
day out of those lists before it drops the day. So a day a checkpoint still names, with no
``observer_ticks`` partition attached for it, was removed by someone else, and its files would
otherwise be "unchanged" forever while the day's 1-minute bars still counted the ticks. Before a
load plans its files:

- a table of the day's name that is only detached is attached again (its rows come back as they were);
- else the day's 1-minute bars are emptied (they were made from ticks that are gone) and every file
  that had ticks on it is loaded again from its start (its other days' ticks are replaced by the
  same ticks; the day's are stored again), said per day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from tasks.jsonl.load import BARS_LOCK
from tasks.jsonl.partitions import day_partitions, ensure_days, is_partitioned, partition_name


def mend_lost_days(conn: psycopg.Connection[Any], say: Callable[[str], None], *, dry_run: bool = False) -> list[dt.date]:
    """Find the days of ticks removed by hand and mend them as the module says; the days found.
    ``conn`` in autocommit mode (a dry run: inside its rolled-back transaction, only saying)."""
    if not is_partitioned(conn, "observer_ticks"):
        return []
    claimed = {r[0] for r in conn.execute("SELECT DISTINCT unnest(tick_days) FROM jsonl_file_checkpoints WHERE kind = 'scalp'")}
    parts = day_partitions(conn, "observer_ticks")
    lost = sorted(day for day in claimed if not (day in parts and parts[day].attached and not parts[day].detach_pending))
    for day in lost:
        name = partition_name("observer_ticks", day)
        if dry_run:
            say(f"First, the ticks of {day} are missing ({name} is not attached): they would be restored")
            continue
        if day in parts:
            ensure_days(conn, [day])
            say(f"Attached {name} again: it had been detached by hand (its ticks of {day} count again)")
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (BARS_LOCK,))
            bars = partition_name("observer_bars_1m", day)
            if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (bars,)).fetchone() == (True,):
                conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(bars)))
            why = f"its ticks of {day} were removed by hand ({name} was dropped): loaded again"
            files = [r[0] for r in conn.execute(
                "UPDATE jsonl_file_checkpoints SET must_reload = %s WHERE kind = 'scalp' AND tick_days @> ARRAY[%s::date]"
                " RETURNING source_file", (why, day))]
        say(f"The ticks of {day} are missing: {name} was dropped, not by retention. Its 1-minute bars are emptied and the"
            f" {len(files)} file(s) that held them load again: {', '.join(sorted(files)[:5])}{' ...' if len(files) > 5 else ''}")
    return lost
