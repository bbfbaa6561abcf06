"""``database.md``: the tables and views users query, with what each column means, generated at every
docs build from the ``COMMENT ON`` statements of the migrations (``sql/``), which are also what the
catalog says (psql's ``\\d+``, a BI tool's schema browser): one place for both.

The data relations are those the read-only role ``market_backfill_reader`` is granted (the migration
that makes it lists them); the rest is the tool's machinery."""

from __future__ import annotations

import re
from pathlib import Path

SQL = Path(__file__).resolve().parent.parent / "sql"
STATEMENT = re.compile(
    r"COMMENT ON (?P<kind>TABLE|VIEW|COLUMN) (?P<name>[\w.\"]+) IS '(?P<text>(?:[^']|'')*)';"
    r"|ALTER (?:TABLE|VIEW) (?P<old>\w+) RENAME TO (?P<new>\w+);"
    r"|ALTER (?:TABLE|VIEW) (?P<owner>\w+) RENAME COLUMN (?P<was>\w+) TO (?P<now>\w+);"
    r"|ALTER TABLE (?P<dropper>\w+) DROP COLUMN (?P<dropped>[\w\"]+);"
    r"|FOREACH relation IN ARRAY ARRAY\[(?P<granted>.*?)\]", re.S)


def _statements() -> list[re.Match[str]]:
    return [m for path in sorted(SQL.glob("[0-9][0-9][0-9]_*.sql")) for m in STATEMENT.finditer(path.read_text(encoding="utf-8"))]


def comments() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """(relation → comment, relation → column → comment) as the migrations leave them: later comments
    override earlier ones, and a renamed table or column keeps its comment under its new name."""
    relations: dict[str, str] = {}
    columns: dict[str, dict[str, str]] = {}
    for m in _statements():
        if m["kind"]:
            text, name = m["text"].replace("''", "'"), m["name"].replace('"', "")  # "window": a reserved word, quoted
            if m["kind"] == "COLUMN":
                relation, column = name.rsplit(".", 1)
                columns.setdefault(relation, {})[column] = text
            else:
                relations[name] = text
        elif m["old"]:
            if m["old"] in relations:
                relations[m["new"]] = relations.pop(m["old"])
            if m["old"] in columns:
                columns[m["new"]] = columns.pop(m["old"])
        elif m["owner"]:
            owned = columns.get(m["owner"], {})
            if m["was"] in owned:
                owned[m["now"]] = owned.pop(m["was"])
        elif m["dropper"]:
            columns.get(m["dropper"], {}).pop(m["dropped"].replace('"', ""), None)
    return relations, columns


def data_relations() -> list[str]:
    """The relations granted to the read-only role, in the migrations' order, under their names now."""
    out: list[str] = []
    for m in _statements():
        if m["granted"] is not None:
            out += [name for name in re.findall(r"'(\w+)'", m["granted"]) if name not in out]
        elif m["old"] and m["old"] in out:
            out[out.index(m["old"])] = m["new"]
    return out


def page() -> str:
    relations, columns = comments()
    data = data_relations()
    lines = ["# The database", "",
             "Users query these tables and views directly (psql, a BI tool, pandas, dbt). What each holds is also in the",
             "catalog itself: `\\d+ daily_bars` in psql shows the same words. `GRANT market_backfill_reader TO your_login`",
             "lets a login read the data and the views, and none of the machinery.", "",
             "The data is in schema `public` (or the schema `DATABASE_URL` puts first on the search path, see",
             "[Settings](settings.md)); the machinery, and the day and month partitions behind `observer_ticks`, `observer_bars_1m`",
             "and `intraday_bars`, are in a schema of their own beside it, `backfill_internal` (`S_internal` beside a",
             "schema `S`), so a schema browser or psql's `\\dt` lists the data alone. Query the partitioned tables, never",
             "their partitions.", "",
             "Every data table has `run_id`: the run that last wrote the row, a row of `backfill_internal.backfill_runs` (its",
             "command, flow, status and times), beside the row's load time (`fetched_at`, `loaded_at` and the like); rows",
             "written before runs were recorded say NULL. A rerun that changes nothing leaves a row's `run_id` as it was.",
             "An operator who may only read, yet runs `backfill-status` or a dry run, also needs the machinery:",
             "`GRANT USAGE ON SCHEMA backfill_internal TO op; GRANT SELECT ON ALL TABLES IN SCHEMA backfill_internal TO op`.", "",
             "Upgrading from a release before the machinery's schema (migration 030): a query of yours that names a machinery",
             "table (`backfill_runs`, `rate_budgets`, ...) names its schema now: `backfill_internal.backfill_runs`. The data",
             "tables and views keep their place; migration 035 renamed some of them (see [Old names](#old-names)).", "",
             "Prices are `double precision` where Yahoo serves them (split- and dividend-adjusted values are not decimal",
             "fractions, and a float is what Yahoo sends) and `numeric(15,4)` in the observer's tables, whose feed writes exact",
             "prices; share counts and volumes are whole numbers (`bigint`).", "",
             "## Data and views", ""]
    old = [name for name in data if relations.get(name, "").startswith("Deprecated")]
    for name in (n for n in data if n not in old):
        lines += [f"### `{name}`", "", relations.get(name, ""), ""]
        if columns.get(name):
            lines += ["| column | meaning |", "|---|---|"]
            lines += [f"| `{c}` | {text.replace('|', '/')} |" for c, text in columns[name].items()]
            lines.append("")
    lines += ["## Old names", "",
              "Renamed to one convention (`ticker` for the instrument, `_at` for an instant, `_date` for a date,",
              "tables by domain and grain); each old name is a view of its table under the old table and column names,",
              "for one release: queries, inserts, upserts and updates through it keep working.", "",
              "| old name | what replaced it |", "|---|---|"]
    lines += [f"| `{name}` | {relations[name].split(': ', 1)[-1]} |" for name in old]
    lines += ["", "## The machinery", "", "What the commands keep for themselves (runs, budgets, checkpoints), in `backfill_internal`;",
              "read it (`SELECT * FROM backfill_internal.backfill_runs`), do not write it.", ""]
    lines += [f"- `{name}`: {text}" for name, text in relations.items() if name not in data]
    return "\n".join(lines) + "\n"


try:  # run by mkdocs-gen-files during `mkdocs build`
    import mkdocs_gen_files
except ImportError:  # imported by a test
    mkdocs_gen_files = None

if mkdocs_gen_files is not None and __name__ == "<run_path>":
    with mkdocs_gen_files.open("database.md", "w") as f:
        f.write(page())
