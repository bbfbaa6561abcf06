"""One definition of a flow's parameters, feeding its CLI flags, its Prefect flow signature and its
deployments.

A ``Param`` is a flow parameter (a JSON value, as the Prefect UI shows it) and, usually, the flag
that sets it. ``add_flags`` builds the argparse flags (whose types return the same JSON values);
``flow_function`` gives a flow body the signature Prefect reads its parameter schema from;
``defaults`` is what a deployment spells out. Each flow module then turns the values into its
options with one function, whichever way they came.
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.cli import OnlyOnce, add_renamed, budget_name, duration_s, float_in, int_in, session_date
from flows.config import default_cache_dir, setting
from tasks.core.commands import Invocation
from tasks.core.errors import BadInput, Outcome
from tasks.core.tickers import parse_shard, parse_ticker_list
from tasks.sources.budget import DEFAULT_DAILY_QUOTA, DEFAULT_NAME, DEFAULT_RATE, normalize_rate, parse_rate

if TYPE_CHECKING:
    from tasks.sources.settings import SourceSettings

_UNSET: Any = object()
MAX_COOL_DOWN_S = 7 * 86_400  # a 429's cool-down: Yahoo's blocks last minutes to hours, never a week


@dataclass(frozen=True)
class Param:
    """A flow parameter and the flag that sets it (``--name-with-dashes`` unless ``flag`` says otherwise).

    ``type`` turns a flag's text into the parameter's JSON value (argparse type; errors exit 2);
    ``cli=False``: a parameter the CLI fills itself (e.g. the command line for resume hints);
    ``flow=False``: a flag that is not a flow parameter (``--dry-run``: dry runs never orchestrate).
    """

    name: str
    default: Any
    help: str
    annotation: Any = str
    type: Callable[[str], Any] | None = None
    flag: str | None = None
    action: str | None = None
    choices: Sequence[str] | None = None
    metavar: str | None = None
    cli: bool = True
    flow: bool = True
    cli_default: Any = _UNSET  # the flag's default when it differs (e.g. from an environment variable)
    required: bool = False  # the flag must be given (the flow parameter still has its default)
    renamed_from: tuple[str, ...] = ()  # old spellings of the flag, kept working for one release with a note
    renamed_type: Callable[[str], Any] | None = None  # how the old spelling reads its value, if not as the new one
    as_flag: Callable[[Any], str] | None = None  # the value as the flag's text, if not str() (resume hints)
    listed: bool = False  # a comma-separated list kept as text: given twice is refused, as list parameters are

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, params: Iterable[Param]) -> None:
    """One flag per CLI parameter; help strings show the defaults."""
    for p in params:
        if not p.cli:
            continue
        default = p.default if p.cli_default is _UNSET else p.cli_default
        kwargs: dict[str, Any] = {"dest": p.name, "default": default}
        if p.required:
            kwargs = {"dest": p.name, "required": True}
        if p.action:
            kwargs["action"] = p.action
            kwargs["help"] = p.help
        else:
            # the help explains its default itself, or there is none to show ("default: None" says nothing)
            says_default = p.required or "default:" in p.help or default is None
            kwargs.update(type=p.type, help=p.help if says_default else f"{p.help} (default: %(default)s)")
            if "list[" in str(p.annotation) or p.listed:
                kwargs["action"] = OnlyOnce
            if p.choices:
                kwargs["choices"] = p.choices
            kwargs["metavar"] = p.metavar or default_metavar(p)
        action = parser.add_argument(p.option, **kwargs)
        if p.renamed_from:
            add_renamed(parser, action, *p.renamed_from, type=p.renamed_type)


def default_metavar(p: Param) -> str | None:
    """What ``--help`` shows for a flag's value when the parameter names none: N, SECONDS, DIR
    (argparse's default is the parameter's name in capitals: DAILY_QUOTA, RATE_LIMIT_SLEEP)."""
    if p.choices:
        return None  # argparse shows the choices
    if p.type is date_text:
        return "YYYY-MM-DD"
    if p.type is ticker_list:
        return "A,B,..."
    if p.annotation in (int, int | None):
        return "N"
    if p.annotation in (float, float | None):
        return "SECONDS" if "second" in p.help else "NUMBER"
    if p.name.endswith("_dir"):
        return "DIR"
    return None


def flow_values(ns: argparse.Namespace, params: Iterable[Param], **extra: Any) -> dict[str, Any]:
    """The flow's parameter values from parsed flags (plus the CLI-filled ones in ``extra``)."""
    values = {p.name: getattr(ns, p.name) for p in params if p.flow and p.cli}
    values.update(extra)
    return values


def defaults(params: Iterable[Param], **overrides: Any) -> dict[str, Any]:
    """Every flow parameter with its default (what a deployment spells out), with ``overrides``."""
    values = {p.name: p.default for p in params if p.flow}
    unknown = set(overrides) - set(values)
    if unknown:
        raise ValueError(f"not parameters of this flow: {sorted(unknown)}")
    values.update(overrides)
    return values


def flow_function(name: str, params: Sequence[Param], body: Callable[[dict[str, Any]], Any], doc: str | None) -> Callable[..., Any]:
    """A function taking the flow parameters as keywords (its signature built from ``params``, so
    Prefect's parameter schema and UI show them) that calls ``body(values)``."""
    def fn(**values: Any) -> Any:
        merged = {**defaults(params), **values}
        try:
            check_values(params, merged)
        except BadInput as exc:
            from flows.orchestration.glue import final_state

            return final_state(Outcome.BAD_INPUT, [f"error: {exc}"])
        return body(merged)

    fn.__name__ = fn.__qualname__ = name.replace("-", "_")
    fn.__doc__ = doc
    fn.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=p.annotation) for p in params if p.flow])
    fn.__annotations__ = {p.name: p.annotation for p in params if p.flow}
    return fn


def invocation_params(prog: str, *, had_command: bool = False) -> list[Param]:
    """The flow parameters that carry the command its hints repeat (``invocation``): filled by the
    CLI, left null by a deployment run. ``had_command``: the flow took the whole line as ``command``
    before; kept for one release, for the runs (continuations) that deployments made before carry it,
    and Prefect refuses a run with a parameter its flow does not have."""
    out = [Param("args", None, "the command's arguments, for the resume hints (null: a deployment run's hints spell its parameters "
                 "as flags)", annotation=list[str] | None, cli=False),
           Param("prog", prog, "the command's name as the user typed it, for the resume hints", cli=False)]
    if had_command:
        out.append(Param("command", None, "deprecated (dropped in the next release): the command line, as runs made before args and "
                         "prog carry it", annotation=str | None, cli=False))
    return out


def invocation_values(call: Invocation) -> dict[str, Any]:
    """The ``invocation_params`` of a command line, as flow parameter values (JSON)."""
    return {"args": list(call.args), "prog": call.prog}


def invocation(params: Iterable[Param], values: dict[str, Any]) -> Invocation:
    """The command a run's hints repeat: the one the CLI passed (``args``), or, for a deployment
    run, its program with the flags of every value that is not the default, one shard's tickers
    included."""
    args, before = values.get("args"), values.get("command")
    if args is None and before and before != values["prog"]:  # a run made before args and prog (its bare prog: spell the flags)
        return Invocation((), str(before))
    return Invocation(tuple(args) if args is not None else tuple(flags_for(params, values)), str(values["prog"]))


def flag_text(value: Any) -> str:
    """A parameter value as its flag's text: a list comma-separated."""
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def flags_for(params: Iterable[Param], values: dict[str, Any]) -> list[str]:
    """The CLI flags that give ``values`` (see ``resume_command``)."""
    args: list[str] = []
    for p in params:
        value = values.get(p.name, p.default)
        if not (p.cli and p.flow) or value == p.default or value is None:
            continue
        if p.action in ("store_true", "store_false"):
            args.append(p.option)
        else:
            args += [p.option, p.as_flag(value) if p.as_flag else flag_text(value)]
    return args


def check_values(params: Iterable[Param], values: dict[str, Any]) -> None:
    """Check flow parameter values (a deployment run's) with the very types and choices the CLI's
    flags use, so a run refuses what the command refuses before it writes anything.

    Raises:
        BadInput: naming the parameter and what is wrong with its value.
    """
    for p in params:
        value = values.get(p.name)
        if not p.flow or value is None or value is _UNSET:
            continue
        if p.action in ("store_true", "store_false"):
            if not isinstance(value, bool):
                raise BadInput(f"parameter {p.name}: not true or false: {value!r}")
            continue
        text = p.as_flag(value) if p.as_flag and isinstance(value, (int, float)) else flag_text(value)
        if isinstance(value, bool) or (p.annotation in (int, float) and not isinstance(value, (int, float))):
            raise BadInput(f"parameter {p.name}: not a number: {value!r}")
        try:
            checked = p.type(text) if p.type is not None else text
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise BadInput(f"parameter {p.name}: {exc}") from None
        if p.choices and checked not in p.choices:
            raise BadInput(f"parameter {p.name}: must be one of {', '.join(p.choices)}: {value!r}")


# -- flag types that return JSON values ---------------------------------------------------------
def flag_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser of ours: its BadInput becomes argparse's one-line error (exit 2)."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except BadInput as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


ticker_list = flag_type(parse_ticker_list)
shard_text = flag_type(lambda text: str(parse_shard(text)))  # a shard, K/N (tasks.core.tickers.Shard), normalized


def minutes_of_duration(text: str) -> float:
    """A duration flag (``5m``, ``300``: seconds) as minutes, for a parameter kept in minutes."""
    return duration_s(0, 86_400)(text) / 60


def date_text(text: str) -> str:
    return session_date(text).isoformat()


def rate_text(text: str) -> str:
    """A rate flag (``60/min``, ``60/min,2000/h``), checked and normalized."""
    try:
        return normalize_rate(text)
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def path_text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a directory")
    return text


# -- values back into typed options --------------------------------------------------------------
def as_date(value: Any, name: str) -> dt.date | None:
    """A date parameter: None, a date, or ISO text.

    Raises:
        BadInput: anything else (a deployment run with a bad parameter).
    """
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise BadInput(f"{name}: not a date (YYYY-MM-DD): {value!r}") from None


def as_tickers(value: Any, default: Sequence[str]) -> tuple[str, ...]:
    """A tickers parameter (list, comma-separated text, or None for ``default``), validated."""
    return tuple(parse_ticker_list(default if value is None else value))


# -- the source settings every fetching flow shares ----------------------------------------------
def source_params(*, delay: float | None, delay_help: str = "minimum seconds between two requests of this run to Yahoo",
                  refresh: bool = True) -> list[Param]:
    """The parameters of ``SourceSettings`` (``delay=None``: the flow spaces its requests its own way)."""
    out = [
        Param("cache_dir", None, "download cache directory (default: $BACKFILL_CACHE_DIR, else .cache)", annotation=str | None,
              type=path_text),
        Param("rate", None, "request budget for Yahoo shared by every run on this database: one N/UNIT or a list, every "
              "window kept (requests spaced at the slowest), e.g. 60/min,2000/h; lowered after a 429 and learned across runs "
              f"(default: $YAHOO_RATE, else {DEFAULT_RATE}: the source document's limits)", annotation=str | None, type=rate_text,
              metavar="N/UNIT[,N/UNIT]"),
        Param("rate_budget", DEFAULT_NAME, "name of the shared budget; runs with the same name share it", type=budget_name,
              metavar="NAME"),
        Param("daily_quota", DEFAULT_DAILY_QUOTA, "requests the shared budget grants per UTC day (Yahoo's published limit: "
              "48,000); at the quota the run stops with the time to resume; 0 = none", annotation=int, type=int_in(0, 10**9)),
        Param("rate_limit_sleep", 900.0, "on HTTP 429: cool the shared budget down this many seconds (doubling while the "
              "block lasts), stop, and advise when to resume", annotation=float, type=float_in(0, MAX_COOL_DOWN_S)),
        Param("max_retries", 3, "retries for transient failures only: timeouts, 5xx, resets; never 429", annotation=int,
              type=int_in(0, 20)),
        Param("retry_wait", 1.0, "first backoff in seconds before a retry; doubles each time, with jitter", annotation=float,
              type=float_in(0, 600)),
        Param("timeout", 10.0, "seconds per HTTP request", annotation=float, type=float_in(0, 3600, above_low=True)),
    ]
    if refresh:
        out.append(Param("refresh", False, "ignore the download cache (the database is still checked first)", annotation=bool,
                         action="store_true"))
    if delay is not None:
        out.append(Param("delay", delay, f"{delay_help}: seconds, or with a unit (90s, 5m)", annotation=float,
                         type=duration_s(0, 3600), metavar="DURATION"))
    return out


def yahoo_rate(given: str | None) -> str:
    """The Yahoo budget's rate: the flag or parameter, else ``$YAHOO_RATE`` (the environment of the
    machine the run starts on: a worker's, for a deployment run left at ``rate: null``), else DEFAULT_RATE.

    Raises:
        BadInput: ``$YAHOO_RATE`` is not a rate.
    """
    if given:
        return str(given)
    env = setting("YAHOO_RATE")
    if env:
        try:
            return normalize_rate(env)
        except BadInput as exc:
            raise BadInput(f"YAHOO_RATE: {exc}") from None
    return DEFAULT_RATE


def source_settings(values: dict[str, Any], *, delay: float | None = None) -> SourceSettings:
    """``SourceSettings`` from a flow's values (``delay`` when the flow computes its own spacing).

    Raises:
        BadInput: a value a deployment run was given is unusable, or the cache directory is.
    """
    # Imported here, by the flows that fetch: the others (JSONL) start without pandas and curl (~0.3 s).
    from tasks.sources.cache import check_cache_dir
    from tasks.sources.settings import SourceSettings

    cache_dir = Path(values.get("cache_dir") or default_cache_dir())
    check_cache_dir(cache_dir, create=not values.get("dry_run", False))
    try:
        return SourceSettings(
            cache_dir=cache_dir, refresh=bool(values.get("refresh", False)),
            delay=float(values["delay"] if delay is None else delay), rate_per_min=parse_rate(yahoo_rate(values.get("rate"))),
            rate_budget=str(values["rate_budget"]), daily_quota=int(values.get("daily_quota", DEFAULT_DAILY_QUOTA)) or None,
            rate_limit_sleep=float(values["rate_limit_sleep"]),
            max_retries=int(values["max_retries"]), retry_wait=float(values["retry_wait"]), timeout=float(values["timeout"]),
        )
    except (TypeError, ValueError) as exc:
        raise BadInput(f"bad source parameter: {exc}") from None


ORCHESTRATE = Param("orchestrate", None, "prefect: run as a Prefect flow; plain: the same code without Prefect; auto: prefect "
                    "when PREFECT_API_URL is set (default: $BACKFILL_ORCHESTRATE, else auto)", choices=("auto", "prefect", "plain"),
                    flow=False)
DRY_RUN = Param("dry_run", False, "say what a run would do; touch nothing", annotation=bool, action="store_true", flow=False)
