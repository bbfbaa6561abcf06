"""A command's ``main(argv)`` run inside the test process, as its subprocess would run it: the same
environment, working folder, ``argv[0]``, stdout and stderr (captured), and signal handlers put back
afterwards. It saves the ~0.5-1 s of Python start and imports that each of the suite's ~250 command
runs paid as a subprocess (issue 38); the commands' own process behaviour (console scripts, signals,
kill -9, Prefect runs, .bat files) is still tested with real processes.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _signals_put_back() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def run_main(module: str, args: list[str], env: Mapping[str, str], cwd: Path) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``python -m module args`` run in this process."""
    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    script = str(cwd / (module.replace(".", "/") + ".py"))  # what argv[0] is under `python -m module`
    with (_environment(env), contextlib.chdir(cwd), _argv([script, *args]), _signals_put_back(),
          contextlib.redirect_stdout(out), contextlib.redirect_stderr(err)):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's --help, or a command that exits itself
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()
