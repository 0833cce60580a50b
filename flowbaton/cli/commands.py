"""The commands that run flows: ``replica``, ``submit`` (and ``--wait``),
``demo``. Each takes the parsed arguments and returns an exit code.

Errors are raised, not printed: ``cli.main`` turns every ``FlowbatonError``
and ``UsageError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..backends.records import nests_deeper
from ..backends.states import SUCCESS
from ..coordinator.replica import connect
from .common import UsageError, backend_url, emit
from .progress import wait_with_progress
from .replica import run_replica
from .terminal import printable

__all__ = ["cmd_replica", "cmd_submit", "cmd_demo", "parse_json"]


#: How deep a JSON argument may nest. Plenty for arguments; far below the
#: recursion limit of everything that walks the value later (codec, storage).
MAX_ARGUMENT_DEPTH = 100


def parse_json(text: str | None, option: str, kind: type) -> Any:
    """A JSON option value of the expected kind (list for --args, object
    otherwise): no NaN/Infinity (stored records cannot hold them), nested at
    most ``MAX_ARGUMENT_DEPTH`` deep."""
    if text is None:
        return kind()
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as err:
        raise UsageError(f"{option}: not valid JSON ({err}): {_shown(text)}") from None
    except RecursionError:
        raise UsageError(f"{option}: nested deeper than {MAX_ARGUMENT_DEPTH} levels") from None
    if not isinstance(value, kind):
        expected = "a JSON list" if kind is list else "a JSON object"
        raise UsageError(f"{option}: expected {expected}, got {type(value).__name__}: {_shown(text)}")
    if nests_deeper(value, MAX_ARGUMENT_DEPTH):
        raise UsageError(f"{option}: nested deeper than {MAX_ARGUMENT_DEPTH} levels")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _shown(text: str, width: int = 200) -> str:
    return repr(text) if len(text) <= width else repr(text[:width]) + "..."


# ---------------------------------------------------------------- commands


def cmd_replica(args: argparse.Namespace) -> int:
    return run_replica(args)  # logging, metrics port, serve: see cli/replica.py


def cmd_submit(args: argparse.Namespace) -> int:
    fargs = parse_json(args.args, "--args", list)
    kwargs = parse_json(args.kwargs, "--kwargs", dict)
    inputs = parse_json(args.inputs, "--inputs", dict)
    # The flow records the submitter's build ("auto": the distribution of the --allow factories, if given).
    with connect(getattr(args, "backend_object", None) or backend_url(args), allow=args.allow,
                 build=args.build) as coord:
        flow_id = coord.submit(args.factory, fargs, kwargs, inputs, name=args.name, allow=args.allow,
                               by_name=args.by_name)
        emit(flow_id)
        if not args.wait:
            return 0
        try:
            if sys.stderr.isatty():
                report = wait_with_progress(coord.backend, flow_id, args.timeout, sys.stderr)
            else:
                report = coord.wait(flow_id, timeout=args.timeout)
        except TimeoutError as err:
            print(f"flowbaton: {printable(str(err))}", file=sys.stderr)
            return 1
    print(printable(f"flow {flow_id}: {report.state}" + (f": {report.reason}" if report.reason else "")),
          file=sys.stderr)
    return 0 if report.state == SUCCESS else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from flowbaton.cli.demo import run_demo

    return run_demo(args.keep)
