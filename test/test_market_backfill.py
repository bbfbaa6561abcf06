"""``market-backfill``: one command with subcommands, ``info`` and ``db``, typed as a user types them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from test.fake_yahoo import FakeYahoo
from test.fix_yahoo import ROOT, CliRunner, cli_env
from test.in_process import run_main
from test.test_pg_tcp import _stop

CMD = "flows.market_backfill"
HEAVY = ("pandas", "prefect", "yfinance", "psycopg", "numpy", "matplotlib", "exchange_calendars")


def market_backfill(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", CMD, *args], cwd=ROOT, env=env or cli_env(None, None), capture_output=True, text=True,
                          timeout=120)


def test_help_and_version_answer_without_importing_any_heavy_library() -> None:
    code = f"import sys, flows.market_backfill as m; m.main(['--version']); print([x for x in {HEAVY!r} if x in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == [f"market-backfill {metadata.version('market-backfill')}", "[]"], done.stderr
    helped = subprocess.run([sys.executable, "-m", "flows", "--help"], cwd=ROOT, env=cli_env(None, None), capture_output=True, text=True,
                            timeout=60)  # python -m flows: the same command, started as its console script is
    assert helped.returncode == 0 and "example:" in helped.stdout and "Exit codes: 0 done" in helped.stdout
    for name in ("backfill", "etf-backfill", "status", "info", "db", "jsonl-ingest", "prefect-local"):
        assert f"\n  {name} " in helped.stdout


def test_a_mistyped_command_is_refused_with_a_suggestion(run_cli: CliRunner) -> None:
    result = run_cli(CMD, "backfil")
    assert result.code == 2
    assert "unknown command 'backfil'; did you mean 'backfill'?" in result.stderr and result.stderr.startswith("usage: market-backfill")


@pytest.mark.empty_database
def test_a_subcommand_is_the_command_of_that_job(run_cli: CliRunner, dsn: str) -> None:
    direct = run_cli("flows.backfill_status", "--days", "3", "--end", "2025-06-30", "--json")
    code, out, err = run_main(CMD, ["status", "--days", "3", "--end", "2025-06-30", "--json"], cli_env(None, dsn), ROOT)
    assert (code, json.loads(out)) == (direct.code, json.loads(direct.stdout)), err
    bad = run_cli(CMD, "backfill", "--tickers", "AAPL", "--days", "0")  # the subcommand's own refusal, exit 2
    assert bad.code == 2 and "--days" in bad.stderr


def test_info_says_where_the_data_is_and_never_a_password(tmp_path: Path) -> None:
    env = {**cli_env(None, "postgresql://market:s3cr3t-pw@db.example:6543/prices"), "FMP_API_KEY": "fmp-s3cr3t",
           "BACKFILL_HOME": str(tmp_path)}
    code, out, err = run_main(CMD, ["info", "--json"], env, ROOT)
    assert code == 0, err
    shown = json.loads(out)
    assert shown["data_home"] == str(tmp_path) and shown["database"] == "db.example:6543/prices"
    assert shown["settings"]["BACKFILL_HOME"] == {"value": str(tmp_path), "from": "environment"}
    assert shown["settings"]["YAHOO_RATE"]["from"] in ("default", "environment")
    assert shown["settings"]["FMP_API_KEY"] == {"value": "(set)", "from": "environment"}
    text = run_main(CMD, ["info"], env, ROOT)[1]
    assert "s3cr3t" not in out + text and f"data home:       {tmp_path}" in text


def test_db_start_status_and_stop_the_embedded_server(cluster_dir: Path) -> None:
    pgdata = cluster_dir / "pg"
    env = cli_env(None, None, BACKFILL_PGDATA=str(pgdata))
    for unset in ("XDG_RUNTIME_DIR", "PYTHONWARNINGS"):  # as on a machine without a login session, warnings shown
        env.pop(unset, None)
    try:
        before = market_backfill("db", "status", env=env)
        assert before.returncode == 0 and before.stdout.strip().endswith("not running (not made yet)"), before.stderr
        started = market_backfill("db", "start", env=env)
        assert started.returncode == 0 and ": running (pid " in started.stdout, started.stdout + started.stderr
        pid = int((pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()[0])
        assert f"running (pid {pid}" in market_backfill("db", "status", env=env).stdout
        stopped = market_backfill("db", "stop", env=env)
        assert stopped.returncode == 0 and stopped.stdout.strip().endswith(": not running"), stopped.stdout + stopped.stderr
        assert (before.stderr, stopped.stderr) == ("", ""), "no line on stderr that is not the command's own"
        assert "Warning" not in started.stderr, started.stderr
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        if (pgdata / "postmaster.pid").exists():
            _stop(pgdata)


def test_a_configuration_file_sets_what_the_environment_does_not(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo,
                                                                tmp_path: Path) -> None:
    config = tmp_path / "market-backfill.toml"
    cache = tmp_path / "configured-cache"
    config.write_text(f'[settings]\nYAHOO_RATE = "77/min"\nBACKFILL_CACHE_DIR = "{cache}"\nBACKFILL_ORCHESTRATE = "plain"\n',
                      encoding="utf-8")
    env = {**cli_env(fake_yahoo, dsn), "BACKFILL_HOME": str(tmp_path)}
    env.pop("YAHOO_RATE", None)
    code, out, err = run_main("flows.backfill", ["--tickers", "AAPL", "--days", "2", "--end", "2025-07-08", "--delay", "0", "--dry-run"],
                              env, ROOT)
    assert code == 0, err
    assert "Rate budget 'yahoo': 77/min" in out  # from the file
    code, out, err = run_main(CMD, ["info", "--json"], env, ROOT)
    shown = json.loads(out)["settings"]
    assert shown["YAHOO_RATE"] == {"value": "77/min", "from": f"configuration file {config}"}
    assert shown["BACKFILL_CACHE_DIR"]["value"] == str(cache)
    code, out, err = run_main(CMD, ["info", "--json"], {**env, "YAHOO_RATE": "99/min"}, ROOT)  # the environment wins
    assert json.loads(out)["settings"]["YAHOO_RATE"] == {"value": "99/min", "from": "environment"}
    bad = tmp_path / "elsewhere.toml"
    bad.write_text("[settings\n", encoding="utf-8")
    broken = run_main(CMD, ["info"], {**env, "BACKFILL_CONFIG": str(bad)}, ROOT)  # named by BACKFILL_CONFIG, not TOML: refused
    assert broken[0] == 2 and f"configuration file {bad}:" in broken[2]


RANGE_COMMANDS = {"flows.etf_backfill": ("--days", "--end"), "flows.staggered_sector_backfill": ("--days", "--end"),
                  "flows.daily_pipeline": ("--days", "--end"), "flows.event_valuation": ("--end",),
                  "flows.backfill": ("--start", "--end", "--days"), "flows.backfill_status": ("--start", "--end", "--days"),
                  "flows.event_report": ("--start", "--end")}
OLD_SPELLINGS = ("--end-date", "--start-date", "--as-of", "--from", "--to", "--delay-minutes")


def test_every_command_names_dates_and_delays_alike_and_help_shows_no_old_spelling(run_cli: CliRunner) -> None:
    for module, flags in RANGE_COMMANDS.items():
        helped = run_cli(module, "--help")
        shown = {word.strip("[],") for word in helped.stdout.split() if word.startswith(("--", "[--"))}
        assert set(flags) <= shown, (module, shown)
        assert not shown & set(OLD_SPELLINGS), (module, shown & set(OLD_SPELLINGS))
        if "--delay" in shown:
            assert "--delay DURATION" in helped.stdout, module


def test_old_spellings_still_work_for_one_release_and_say_the_new_one(run_cli: CliRunner, dsn: str) -> None:
    note = "note: {} is now {}; the old spelling goes in the next release"
    pairs = [  # (command, old flags, the same with the new flags)
        ("flows.etf_backfill", ["--tickers", "XLK", "--days", "5", "--end-date", "2025-07-08", "--dry-run"],
         ["--tickers", "XLK", "--days", "5", "--end", "2025-07-08", "--dry-run"]),
        ("flows.staggered_sector_backfill", ["--tickers", "XLK,XLV", "--days", "5", "--end-date", "2025-07-08", "--delay-minutes", "1.5",
                                             "--dry-run"],
         ["--tickers", "XLK,XLV", "--days", "5", "--end", "2025-07-08", "--delay", "90s", "--dry-run"]),
        ("flows.backfill_status", ["--start-date", "2025-06-02", "--end-date", "2025-06-30", "--json"],
         ["--start", "2025-06-02", "--end", "2025-06-30", "--json"]),
        ("flows.event_report", ["--from", "2025-01-01", "--to", "2025-06-30", "--json"],
         ["--start", "2025-01-01", "--end", "2025-06-30", "--json"]),
        ("flows.daily_pipeline", ["--stages", "trending", "--as-of", "2025-06-30", "--dry-run"],
         ["--stages", "trending", "--end", "2025-06-30", "--dry-run"]),
    ]
    for module, old, new in pairs:
        before, after = run_cli(module, *old), run_cli(module, *new)
        assert (before.code, without_clock(before.stdout)) == (after.code, without_clock(after.stdout)), (module, before, after)
        renamed = [(o, n) for o, n in zip(old, new, strict=True) if o != n and o.startswith("--")]
        assert renamed, module
        for o, n in renamed:
            assert note.format(o, n) in before.stderr.splitlines(), (module, before.stderr)
        assert "note:" not in after.stderr, after.stderr
    # a bare number is seconds: 90 is the 1.5 minutes above
    assert "1.5 min between network fetches" in run_cli("flows.staggered_sector_backfill", "--tickers", "XLK,XLV", "--days", "5",
                                                        "--end", "2025-07-08", "--delay", "90", "--dry-run").stdout


def without_clock(text: str) -> str:
    """A dry run's text without its ETA's clock time (two runs a second apart differ there only)."""
    return re.sub(r"ETA \S+ UTC \(in [^)]*\)", "ETA", text)


def test_a_delay_is_a_duration_with_a_unit_or_seconds_and_anything_else_is_refused(run_cli: CliRunner, dsn: str) -> None:
    from flows.cli import duration_s

    parse = duration_s(0, 86_400)
    assert [parse(t) for t in ("90", "90s", "1.5m", "2h", " 5M ", ".5")] == [90.0, 90.0, 90.0, 7200.0, 300.0, 0.5]
    for text in ("5x", "-1", "m", "1e9", "nan", "inf", "25h", "-5m"):
        bad = run_cli("flows.etf_backfill", "--tickers", "XLK", "--days", "5", "--delay", text, "--dry-run")
        assert bad.code == 2 and "--delay" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, (text, bad.stderr)


def test_quiet_says_only_the_summary_and_verbose_each_request(run_cli: CliRunner, dsn: str, fake_yahoo: FakeYahoo) -> None:
    base = ("--days", "5", "--end", "2025-07-08", "--delay", "0", "--no-batch")
    quiet = run_cli("flows.etf_backfill", "--tickers", "XLK,XLV", *base, "-q")
    assert quiet.code == 0 and quiet.stdout.splitlines() == ["Prices: 10 new, 0 updated, 0 skipped, 0 errors"], quiet.stdout
    fake_yahoo.reset_log()
    loud = run_cli("flows.etf_backfill", "--tickers", "XLF,XLE", *base, "-v")
    assert loud.code == 0 and "[2/2] XLE fetched" in loud.stdout
    asked = [line for line in loud.stderr.splitlines() if line.startswith("DEBUG GET https://")]
    assert len(asked) == len(fake_yahoo.log) and any("/v8/finance/chart/XLE -> 200" in line for line in asked), loud.stderr
    assert "crumb=" not in loud.stderr  # the request's query (its crumb) is not logged
    both = run_cli("flows.etf_backfill", "--tickers", "XLB", *base, "-q", "-v")
    assert both.code == 2 and "not allowed with" in both.stderr
    after = run_cli("flows.etf_backfill", "--tickers", "XLB,XLU", *base)  # -q and -v were those commands', not this one's
    assert "[1/2] XLB fetching" in after.stdout and "DEBUG" not in after.stderr


def test_a_list_flag_given_twice_is_refused_in_every_command(run_cli: CliRunner, dsn: str) -> None:
    import argparse
    import importlib

    from flows.cli import OnlyOnce
    from flows.market_backfill import COMMANDS

    for name, (module, _) in COMMANDS.items():
        if name in ("info", "db", "prefect-local"):
            continue
        parser = importlib.import_module(module).build_parser()
        for action in parser._actions:  # every flag that takes a comma-separated list
            if action.option_strings and action.help not in (None, argparse.SUPPRESS) and "comma-separated" in action.help:
                assert isinstance(action, OnlyOnce), (name, action.option_strings)
    twice = run_cli("flows.backfill_status", "--tickers", "XLK", "--tickers", "XLV")
    assert twice.code == 2 and "given twice" in twice.stderr, twice.stderr


def test_a_configuration_file_naming_an_unknown_or_prefect_setting_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    import re

    from flows import config

    for n, (line, said) in enumerate([('YAHOO_RAT = "77/min"', "YAHOO_RAT is not a setting; did you mean YAHOO_RATE?"),
                                      ('PREFECT_API_URL = "http://h:4200/api"', "PREFECT_API_URL is Prefect's own setting, which "
                                                                                  "Prefect reads from the environment only")]):
        path = tmp_path / f"c{n}.toml"
        path.write_text(f"[settings]\n{line}\n", encoding="utf-8")
        code, out, err = run_main(CMD, ["info"], {**cli_env(None, None), "BACKFILL_CONFIG": str(path)}, ROOT)
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    read = set()  # every setting a command reads through config.setting is one the file may set, and no other
    for source in [*(ROOT / "flows").rglob("*.py"), *(ROOT / "tasks").rglob("*.py")]:
        read |= set(re.findall(r'setting\("([A-Z_]+)"\)', source.read_text(encoding="utf-8")))
    assert read == set(config.IN_FILE)
