"""A flow's command, made one way: its parser (a flag per flow parameter, ``flows/params.py``) and
its ``main``, which runs the flow through Prefect when ``--orchestrate`` says so and the plain
run otherwise, under ``run_as_command``'s exit codes and stop handling. Each flow module says only what
is its own: how the parsed flags become the flow's values, the plain run, and what an interrupt
says."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flows.cli import ArgumentParser, program_name, run_as_command, use_prefect
from flows.params import Param, add_flags, flow_values, invocation_values
from tasks.core.commands import Invocation
from tasks.core.errors import Outcome

Values = Callable[[argparse.Namespace, Invocation], dict[str, Any]]
Plain = Callable[[argparse.Namespace, dict[str, Any], Invocation], Outcome | int]
Interrupted = Callable[[Invocation], str | Callable[[], str] | None]


@dataclass(frozen=True)
class FlowCommand:
    """The command of the flow that ``build_flow`` makes (built on demand: a plain run never
    imports Prefect)."""

    module: str
    prog: str
    params: Sequence[Param]
    description: str
    examples: Sequence[str]
    build_flow: Callable[[], Any]

    def parser(self) -> ArgumentParser:
        parser = ArgumentParser(prog=self.prog, examples=tuple(self.examples), description=self.description)
        add_flags(parser, self.params)
        return parser

    def values(self, ns: argparse.Namespace, call: Invocation) -> dict[str, Any]:
        """The flow's values of parsed flags, with the command line its hints repeat when it takes one."""
        carried = invocation_values(call) if any(p.name == "args" for p in self.params) else {}
        return flow_values(ns, self.params, **carried)

    def main(self, argv: Sequence[str] | None, *, plain: Plain, interrupted: Interrupted, values: Values | None = None) -> int:
        """Parse ``argv`` (else the process's arguments), turn the flags into the flow's values
        (``values``, else ``self.values``; either may refuse a combination: BadInput), then run: the
        flow with those values under Prefect, or ``plain``. ``interrupted`` says what a stop keeps and
        how to go on (see ``run_as_command``)."""
        values = values or self.values
        call = Invocation(tuple(sys.argv[1:] if argv is None else argv), program_name(self.module, self.prog))

        def body() -> Outcome | int:
            ns = self.parser().parse_args(call.args)
            given = values(ns, call)
            if use_prefect(ns.orchestrate, dry_run=ns.dry_run):
                from flows.orchestration.glue import run_flow

                return run_flow(self.build_flow(), given)
            return plain(ns, given, call)

        return run_as_command(body, interrupted=interrupted(call))
