"""The README's commands, typed as a user types them, and the docs' command pages, which are generated
from the commands' own parsers (so every flag a command has is on its page, and no other)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import psycopg

from test.fake_yahoo import FakeYahoo
from test.fix_yahoo import ROOT, cli_env
from test.in_process import run_main
from test.nyse_days import closed_trading_days, trading_days

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]


def script_module(name: str) -> str:
    """The module whose ``main`` the console script ``name`` runs (through ``flows/launch.py``)."""
    import flows.launch

    return str(getattr(flows.launch, SCRIPTS[name].split(":")[1]).module)


def readme_commands() -> list[list[str]]:
    """Every ``uv run ...`` line of the README's code blocks, as argv after ``uv run`` (comments dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [shlex.split(line.split("#", 1)[0])[2:] for block in blocks for line in block.splitlines() if line.startswith("uv run ")]


def test_the_readme_s_commands_run_as_typed(fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    commands = readme_commands()
    assert [c[0] for c in commands] == ["backfill", "backfill", "backfill-status", "market-backfill", "market-backfill", "pytest"]
    env = {**cli_env(fake_yahoo, dsn), "BACKFILL_CACHE_DIR": str(tmp_path / "cache")}
    for argv in commands[:-1]:  # all but pytest, which is this
        code, out, err = run_main(script_module(argv[0]), argv[1:], env, ROOT)
        assert code == 0, (argv, out, err)
        if argv[:2] == ["backfill", "--tickers"]:  # the first: daily bars of AAPL and MSFT since the day it names
            start = argv[argv.index("--start") + 1]
            sessions = trading_days(dt.date.fromisoformat(start), closed_trading_days(1)[-1])
            with psycopg.connect(dsn) as conn:
                stored = conn.execute("SELECT ticker, count(*) FROM stock_daily_bars GROUP BY 1 ORDER BY 1").fetchall()
            assert stored == [("AAPL", len(sessions)), ("MSFT", len(sessions))]
        if argv[0] == "backfill-status":
            assert re.search(r"AAPL .* 0 ", out) and "MSFT" in out, out


def test_the_event_valuation_example_runs_as_typed_on_the_example_file(fake_yahoo: FakeYahoo, dsn: str, tmp_path: Path) -> None:
    page = (ROOT / "docs" / "event-valuation.md").read_text(encoding="utf-8")
    block = re.findall(r"```bash\n(.*?)```", page, flags=re.S)[0]
    typed = [shlex.split(line.split("#", 1)[0])[2:] for line in block.splitlines()[:2]]
    assert [t[0] for t in typed] == ["event-valuation", "event-report"]
    env = {**cli_env(fake_yahoo, dsn), "BACKFILL_CACHE_DIR": str(tmp_path / "cache")}
    rows = (ROOT / typed[0][typed[0].index("--import-csv") + 1]).read_text(encoding="utf-8").splitlines()[1:]
    for argv in typed:
        code, out, err = run_main(script_module(argv[0]), argv[1:], env, ROOT)
        assert code == 0, (argv, out, err)
    with psycopg.connect(dsn) as conn:
        valued = conn.execute("SELECT ticker, source FROM events WHERE valuation_status = 'ok' ORDER BY 1, 2").fetchall()
    assert valued == sorted((r.split(",")[0], r.split(",")[2]) for r in rows)
    assert all(f"| {source} |" in out for source in {r.split(",")[2] for r in rows}), out  # the report: one row per source


def generated_pages() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("gen_commands", ROOT / "docs" / "gen_commands.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.pages())


def test_every_command_has_a_page_listing_each_flag_it_has_and_no_old_spelling_as_a_flag() -> None:
    import argparse

    from flows.market_backfill import COMMANDS

    pages = generated_pages()
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for name, (module, _) in COMMANDS.items():
        page = pages[f"commands/{name}.md"]
        assert f"commands/{name}.md" in nav, name
        builder = {"info": "build_parser", "db": "build_db_parser"}.get(name, "build_parser")
        parser = getattr(importlib.import_module(module), builder)()
        rows = [line for line in page.splitlines() if line.startswith("| `")]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            shown = [row for row in rows if any(f"`{o}`" in row.split("|")[1] for o in action.option_strings or [action.dest])]
            if action.help == argparse.SUPPRESS:  # an old spelling: named in the note, not a row of its own
                assert not shown and f"`{action.option_strings[0]}` (now" in page, (name, action.option_strings)
            else:
                assert len(shown) == 1, (name, action.option_strings or action.dest, rows)
        assert len(rows) == len([a for a in parser._actions if a.help != argparse.SUPPRESS and not isinstance(a, argparse._HelpAction)])
        if name == "prefect-local":
            continue  # Prefect's side: its actions are its example (prefect-local start | status | stop)
        examples = parser.examples
        assert examples and "examples:\n" in parser.format_help() and all(f"\n{e}\n" in page for e in examples), name
        for example in examples:  # each parses as typed (the command's name, then its flags)
            words = shlex.split(example)
            assert " ".join(words[:len(parser.prog.split())]) == parser.prog, example
            parser.parse_args(words[len(parser.prog.split()):])
