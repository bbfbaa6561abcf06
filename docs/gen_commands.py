"""A page per command, generated from its argparse parser at every docs build (mkdocs-gen-files), so
the flags the docs list are the flags the command has: the docs cannot drift from the code.

``pages()`` is also what the test of the docs reads (test/test_docs.py)."""

from __future__ import annotations

import argparse
import importlib
import re

# subcommand of market-backfill → (module, its parser's builder)
PARSERS = {"info": ("flows.info", "build_parser"), "db": ("flows.info", "build_db_parser")}
HIDDEN = argparse.SUPPRESS


def parser_of(name: str, module: str) -> argparse.ArgumentParser:
    module, builder = PARSERS.get(name, (module, "build_parser"))
    parser: argparse.ArgumentParser = getattr(importlib.import_module(module), builder)()
    return parser


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def help_of(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {"default": action.default, "prog": prog, "choices": ", ".join(map(str, action.choices or ()))}
    return text.replace("%%", "%")


def flag_of(action: argparse.Action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
    if action.nargs == 0:
        return names
    metavar = action.metavar or ("{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper())
    return f"{names} `{metavar}`" if action.option_strings else names


def renamed(parser: argparse.ArgumentParser) -> list[tuple[str, str]]:
    """(old spelling, new flag) of the flags kept for one release (hidden from --help)."""
    out = []
    for action in parser._actions:  # argparse has no public list of a parser's actions
        new = getattr(action, "new", None)
        if new is not None:
            out += [(o, new.option_strings[0]) for o in action.option_strings]
    return out


def page(name: str, module: str, about: str) -> str:
    parser = parser_of(name, module)
    prog = parser.prog
    lines = [f"# {name}", "", f"{about[0].upper()}{about[1:]}.", "", parser.description or "", "",
             f"Run it as `market-backfill {name}`" + (f" or `{prog}`" if prog != f"market-backfill {name}" else "") + ".", "",
             "```text", parser.format_usage().strip(), "```", "", "| flag | meaning (and default) |", "|---|---|"]
    for action in parser._actions:
        if action.help == HIDDEN or isinstance(action, argparse._HelpAction):
            continue
        lines.append(f"| {cell(flag_of(action))} | {cell(help_of(action, prog))} |")
    examples = getattr(parser, "examples", ())
    if examples:
        lines += ["", "Examples:", "", "```bash", *examples, "```"]
    old = renamed(parser)
    if old:
        lines += ["", "Old spellings, working for this release with a one-line note: "
                  + ", ".join(f"`{o}` (now `{n}`)" for o, n in old) + "."]
    if parser.epilog:
        lines += ["", re.sub(r"^exit codes:", "**Exit codes**:", parser.epilog)]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """``commands/<name>.md`` for every subcommand, and ``commands/index.md`` listing them."""
    from flows.market_backfill import COMMANDS, EXIT_CODES

    out: dict[str, str] = {}
    index = ["# Commands", "", "Every job is a subcommand of `market-backfill` (the old command names stay as shortcuts):", "",
             "| command | what it does |", "|---|---|"]
    for name, (module, about) in COMMANDS.items():
        out[f"commands/{name}.md"] = page(name, module, about)
        index.append(f"| [`{name}`]({name}.md) | {cell(about)} |")
    index += ["", EXIT_CODES]
    out["commands/index.md"] = "\n".join(index) + "\n"
    return out


try:  # run by mkdocs-gen-files during `mkdocs build`
    import mkdocs_gen_files
except ImportError:  # imported by a test
    mkdocs_gen_files = None

if mkdocs_gen_files is not None and __name__ == "<run_path>":
    for path, text in pages().items():
        with mkdocs_gen_files.open(path, "w") as f:
            f.write(text)
