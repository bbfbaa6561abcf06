"""The numbered .bat files, run by a real cmd (wine's) as a Windows user runs them, with stand-ins for
uv.exe and python.exe (test/windows/stub.c, cross-compiled with mingw-w64) that record how they were
called and exit with the code the test chooses.

Needs Debian's wine64 and gcc-mingw-w64-x86-64 (``.ci/run`` installs them); skipped, with the
reason, where they are missing. Run them alone with ``uv run pytest test/test_windows_bat.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from test.fix_yahoo import ROOT

pytestmark = pytest.mark.slow
WINE = next((w for w in ("/usr/lib/wine/wine64", shutil.which("wine64") or "", shutil.which("wine") or "") if w and os.path.exists(w)),
            None)
WINESERVER = next((w for w in ("/usr/lib/wine/wineserver64", shutil.which("wineserver") or "") if w and os.path.exists(w)), None)
MINGW = shutil.which("x86_64-w64-mingw32-gcc")
BATS = ["1_run_backfill.bat", "2_run_staggered.bat", "3_run_daily_pipeline.bat", "4_backfill_status.bat", "5_backfill.bat"]


@pytest.fixture(scope="session")  # one prefix per test worker, however its tests interleave with other modules'
def wine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A wine prefix, a copy of the checkout's .bat files, and the stubs: bin/uv.exe on PATH, and
    python.exe / py.exe each in a folder of its own for the bootstrap tests."""
    if WINE is None or MINGW is None:
        pytest.skip("wine64 and mingw-w64 are not installed (apt-get install wine64 gcc-mingw-w64-x86-64; .ci/run does)")
    work = tmp_path_factory.mktemp("wine")
    checkout, stubs = work / "checkout", work / "stubs"
    checkout.mkdir()
    for name in [*BATS, "_setup.bat"]:
        shutil.copy(ROOT / name, checkout / name)
    for folder, exe in (("bin", "uv.exe"), ("python", "python.exe"), ("py", "py.exe"), ("scripts", "uv.exe")):
        (stubs / folder).mkdir(parents=True, exist_ok=True)
        built = subprocess.run([MINGW, "-municode", "-O2", "-o", str(stubs / folder / exe), str(ROOT / "test" / "windows" / "stub.c")],
                               capture_output=True, text=True)
        assert built.returncode == 0, built.stderr
    env = {"WINEPREFIX": str(work / "prefix"), "WINEDEBUG": "-all", "HOME": str(work), "PATH": os.environ.get("PATH", ""),
           "DISPLAY": ""}
    for _ in range(3):  # creates the prefix
        first = subprocess.run([WINE, "cmd", "/c", "exit 0"], env=env, capture_output=True, timeout=300)
        if first.returncode == 0:
            break
        # Seen once in a full suite: wine exited 1 at once, printing nothing and making no prefix.
        if WINESERVER:
            subprocess.run([WINESERVER, "--kill"], env=env, timeout=60)
        shutil.rmtree(work / "prefix", ignore_errors=True)
    assert first.returncode == 0, (first.stdout + first.stderr)[-2000:]
    # One wineserver for every test here: by default it exits 3 s after its last program, and a wine
    # started while it exits failed now and then (cmd exited 1, printing nothing).
    if WINESERVER:  # the first one's (it made the prefix) ends first: a second is refused while one runs
        subprocess.run([WINESERVER, "--wait"], env=env, timeout=60)
        subprocess.run([WINESERVER, "--persistent"], env=env, check=True, timeout=60)
        # wine's services start with the first program and would now outlive it, holding the output
        # pipes of whichever test's wine started them: they start here, writing nowhere.
        subprocess.run([WINE, "cmd", "/c", "exit 0"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True, timeout=120)
    try:
        yield {"work": work, "checkout": checkout, "stubs": stubs}
    finally:
        if WINESERVER:
            subprocess.run([WINESERVER, "--kill"], env=env, timeout=60)


def run_bat(wine: dict[str, Path], bat: str, args: str, *, path: list[str], cwd: Path | None = None,
            extra: dict[str, str] | None = None, how: str = "scheduled", keys: str = "") -> tuple[int, list[list[str]], str]:
    """``cmd /c <checkout>\\BAT ARGS`` with ``path`` (stub folders) as the Windows PATH; (exit code,
    the stubs' calls: [name, cwd, BACKFILL_PGDATA, arg, ...], output).

    ``how``: ``scheduled`` (by its full path with BACKFILL_NO_PAUSE=1, as a scheduled task starts it),
    ``double-click`` (by its full path, as Explorer starts it: ``keys`` are the keys pressed), or
    ``console`` (typed by its name in a console whose folder is the checkout)."""
    log = wine["work"] / "calls.log"
    log.unlink(missing_ok=True)
    windows_path = ";".join([*(f"Z:{str(wine['stubs'] / p).replace('/', chr(92))}" for p in path), "C:\\windows\\system32",
                             "C:\\windows"])
    env = {"WINEPREFIX": str(wine["work"] / "prefix"), "WINEDEBUG": "-all", "HOME": str(wine["work"]), "DISPLAY": "",
           "PATH": os.environ.get("PATH", ""), "WINEPATH": windows_path,
           "STUB_LOG": "Z:" + str(log).replace("/", "\\"), "STUB_SCRIPTS": "Z:" + str(wine["stubs"] / "scripts").replace("/", "\\"),
           **({"BACKFILL_NO_PAUSE": "1"} if how == "scheduled" else {}), **(extra or {})}
    target = "Z:" + str(wine["checkout"] / bat).replace("/", "\\")
    # A console user types the file's path as it is from their folder (here the work folder, the
    # checkout's parent): %0 is that relative path, not the full one Explorer passes.
    line = f'cmd /c "checkout\\{bat}" {args}' if how == "console" else f'cmd /c "{target}" {args}'
    if how == "console":
        cwd = wine["work"]
    for _ in range(3):
        done = subprocess.run(f"{WINE} {line}", shell=True, env=env, cwd=cwd or wine["work"], capture_output=True, input=keys,
                              text=True, errors="replace", timeout=120)
        # Wine's loader, on a loaded machine, now and then fails to start cmd.exe itself ("ShellExecuteEx
        # failed: Internal error", seen once in a full suite): no .bat line ran, so it is started again.
        if not ("ShellExecuteEx failed" in done.stdout + done.stderr and not log.exists()):
            break
    calls = [line.rstrip("\r\n").lstrip("\ufeff").split("\t") for line in log.read_text(encoding="utf-8", errors="replace").splitlines()
             ] if log.exists() else []
    return done.returncode, calls, done.stdout + done.stderr


def uv_runs(calls: list[list[str]]) -> list[list[str]]:
    return [c[3:] for c in calls if c[0].lower() == "uv.exe" and c[3:4] == ["run"]]


def test_arguments_reach_uv_unchanged(wine: dict[str, Path]) -> None:
    # Quotes, commas, spaces, parentheses, & ^ ! inside quotes. (A lone % is not among them: wine's cmd drops it from
    # a batch file's parameters, where Windows' keeps it; see README, Windows.)
    code, calls, out = run_bat(wine, "1_run_backfill.bat", '--tickers "XLK,XLV" --plot "my dir (2)\\cov & co ^!.png" --days 60',
                               path=["bin"])
    assert code == 0, out
    checkout = "Z:" + str(wine["checkout"]).replace("/", "\\")
    assert [c[3:] for c in calls if c[3:4] == ["sync"]] == [["sync", "--locked", "--compile-bytecode", "--project", checkout + "\\."]]
    assert uv_runs(calls) == [["run", "--project", checkout + "\\.", "etf-backfill", "--days", "20", "--tickers", "XLK,XLV", "--plot",
                               "my dir (2)\\cov & co ^!.png", "--days", "60"]]


def test_relative_paths_stay_the_users_and_the_data_stays_with_the_checkout(wine: dict[str, Path], tmp_path: Path) -> None:
    code, calls, out = run_bat(wine, "4_backfill_status.bat", "--plot coverage.png", path=["bin"], cwd=tmp_path)
    assert code == 0, out
    (run,) = [c for c in calls if c[3:4] == ["run"]]
    assert run[1].rstrip("\\").lower() == ("Z:" + str(tmp_path).replace("/", "\\")).lower()  # uv starts in the user's folder
    assert run[2] == "Z:" + str(wine["checkout"]).replace("/", "\\") + "\\.pgdata"  # the checkout's database, wherever the user is


@pytest.mark.parametrize("exit_code", [0, 1, 2, 75, 130])
def test_every_exit_code_of_the_command_comes_back(wine: dict[str, Path], exit_code: int) -> None:
    code, calls, out = run_bat(wine, "3_run_daily_pipeline.bat", "--stages trending", path=["bin"], extra={"STUB_EXIT": str(exit_code)})
    assert code == exit_code, out
    assert uv_runs(calls)[0][-2:] == ["--stages", "trending"]


def test_a_setup_failure_has_a_code_of_its_own(wine: dict[str, Path]) -> None:
    code, calls, out = run_bat(wine, "1_run_backfill.bat", "", path=["bin"], extra={"STUB_UV_SYNC_EXIT": "1"})
    assert code == 3, out
    assert uv_runs(calls) == []  # the command never ran
    assert "Setup failed" in out


def test_resume_runs_the_staggered_command_without_the_default_flags(wine: dict[str, Path]) -> None:
    code, calls, out = run_bat(wine, "2_run_staggered.bat", "--resume", path=["bin"])
    assert code == 0, out
    assert uv_runs(calls)[0][3:] == ["staggered-backfill", "--resume"]
    code, calls, out = run_bat(wine, "2_run_staggered.bat", "--start-from XLV", path=["bin"])
    assert uv_runs(calls)[0][3:] == ["staggered-backfill", "--days", "20", "--delay", "5m", "--skip-existing", "--start-from",
                                     "XLV"]


def test_the_backfill_bat_takes_the_watchlist_alone_and_the_users_arguments_otherwise(wine: dict[str, Path]) -> None:
    checkout = "Z:" + str(wine["checkout"]).replace("/", "\\")
    code, calls, out = run_bat(wine, "5_backfill.bat", "", path=["bin"])
    assert code == 0, out
    assert uv_runs(calls)[0][3:] == ["backfill", "--universe", checkout + "\\watchlist.txt", "--days", "5"]
    code, calls, out = run_bat(wine, "5_backfill.bat", '--tickers "AAPL,MSFT" --start 2015-01-02 --cache-dir "my dir (2)"', path=["bin"])
    assert code == 0, out
    assert uv_runs(calls)[0][3:] == ["backfill", "--tickers", "AAPL,MSFT", "--start", "2015-01-02", "--cache-dir", "my dir (2)"]


@pytest.mark.parametrize("python", ["python", "py"])
def test_without_uv_the_bootstrap_installs_it_with_python_or_the_py_launcher(wine: dict[str, Path], python: str) -> None:
    code, calls, out = run_bat(wine, "1_run_backfill.bat", "--days 5", path=[python])
    assert code == 0, out
    names = [c[0].lower() for c in calls]
    assert names[:2] == [f"{python}.exe", f"{python}.exe"] and names[2:] == ["uv.exe", "uv.exe"], calls
    assert calls[0][3:] == ["-m", "pip", "install", "--user", "uv"]
    assert uv_runs(calls)[0][-2:] == ["--days", "5"]


def test_without_uv_or_python_setup_says_what_to_install(wine: dict[str, Path]) -> None:
    code, calls, out = run_bat(wine, "1_run_backfill.bat", "", path=[])
    assert code == 3 and calls == [] and "Install Python" in out, out


@pytest.mark.parametrize("bat, args, stub, code", [
    ("1_run_backfill.bat", "", {"STUB_EXIT": "2"}, 2),  # the command refused: its one line must stay readable
    ("5_backfill.bat", "--tickers AAPL --days 5", {}, 0),
    ("4_backfill_status.bat", "", {"STUB_UV_SYNC_EXIT": "1"}, 3),  # setup failed: its reason too
])
def test_a_double_clicked_bat_waits_for_a_key_before_its_window_closes(wine: dict[str, Path], bat: str, args: str,
                                                                       stub: dict[str, str], code: int) -> None:
    import threading

    proc, log = start_double_clicked(wine, bat, args, stub)
    seen: list[str] = []
    prompted = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1):
            seen.append(chunk)
            if "Press any key" in "".join(seen[-40:]):
                prompted.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert prompted.wait(120), "".join(seen)
        assert proc.poll() is None  # the window is still open, waiting
        assert proc.stdin is not None
        proc.stdin.write("\r\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == code, "".join(seen)
    finally:
        proc.kill()
    reader.join(timeout=10)


def start_double_clicked(wine: dict[str, Path], bat: str, args: str, extra: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    """``cmd /c "<full path>"`` as Explorer starts a double-clicked file, its keyboard a pipe."""
    log = wine["work"] / "calls.log"
    windows_path = f"Z:{str(wine['stubs'] / 'bin').replace('/', chr(92))};C:\\windows\\system32;C:\\windows"
    env = {"WINEPREFIX": str(wine["work"] / "prefix"), "WINEDEBUG": "-all", "HOME": str(wine["work"]), "DISPLAY": "",
           "PATH": os.environ.get("PATH", ""), "WINEPATH": windows_path, "STUB_LOG": "Z:" + str(log).replace("/", "\\"),
           "STUB_SCRIPTS": "Z:" + str(wine["stubs"] / "scripts").replace("/", "\\"), **extra}
    target = "Z:" + str(wine["checkout"] / bat).replace("/", "\\")
    proc = subprocess.Popen(f'{WINE} cmd /c "{target}" {args}', shell=True, env=env, cwd=wine["work"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    return proc, log


@pytest.mark.parametrize("how", ["console", "scheduled"])
def test_typed_in_a_console_or_started_by_a_scheduled_task_a_bat_does_not_wait(wine: dict[str, Path], how: str) -> None:
    code, calls, out = run_bat(wine, "3_run_daily_pipeline.bat", "--stages trending", path=["bin"], extra={"STUB_EXIT": "75"}, how=how)
    assert code == 75, out
    assert uv_runs(calls)[0][-2:] == ["--stages", "trending"]
    assert "Press any key" not in out
