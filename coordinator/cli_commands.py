"""The CLI's commands: each takes the parsed arguments and returns an exit code.

Errors are raised, not printed: ``cli.main`` turns every ``FlowbatonError``
and ``UsageError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..backends import default_url, open_backend
from ..backends.base import Backend
from ..backends.states import SUCCESS
from .cli_views import (
    claim_row,
    flow_row,
    render_claims,
    render_flows,
    render_json,
    render_show,
    show_doc,
    stranded,
)
from .replica import connect
from .standalone import run_replica

__all__ = ["UsageError", "cmd_replica", "cmd_submit", "cmd_flows", "cmd_show", "cmd_claims", "cmd_demo"]


class UsageError(Exception):
    """Bad command-line input that argparse cannot see (e.g. malformed JSON)."""


def backend_url(args: argparse.Namespace) -> str:
    return str(getattr(args, "backend", None) or default_url())


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[Backend]:
    backend = open_backend(backend_url(args))
    try:
        yield backend
    finally:
        backend.close()


def parse_json(text: str | None, option: str, kind: type) -> Any:
    """A JSON option value of the expected kind (list for --args, object otherwise)."""
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as err:
        raise UsageError(f"{option}: not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, kind):
        expected = "a JSON list" if kind is list else "a JSON object"
        raise UsageError(f"{option}: expected {expected}, got {type(value).__name__}: {text!r}")
    return value


def emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- commands


def cmd_replica(args: argparse.Namespace) -> int:
    return run_replica(args)  # logging, metrics port, serve: see standalone.py


def cmd_submit(args: argparse.Namespace) -> int:
    fargs = parse_json(args.args, "--args", list)
    kwargs = parse_json(args.kwargs, "--kwargs", dict)
    inputs = parse_json(args.inputs, "--inputs", dict)
    with connect(backend_url(args)) as coord:
        flow_id = coord.submit(args.factory, fargs, kwargs, inputs, name=args.name)
        emit(flow_id)
        if not args.wait:
            return 0
        try:
            report = coord.wait(flow_id, timeout=args.timeout)
        except TimeoutError as err:
            print(f"flowbaton: {err}", file=sys.stderr)
            return 1
    print(f"flow {flow_id}: {report.state}" + (f": {report.reason}" if report.reason else ""), file=sys.stderr)
    return 0 if report.state == SUCCESS else 1


def cmd_flows(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        owners = {c.flow_id: c.owner for c in backend.list_claims()}
        flows = backend.list_flows([args.state] if args.state else None)
        rows = [flow_row(f, owners.get(f.id)) for f in flows]
    emit(render_json(rows) if args.json else render_flows(rows))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        flow = backend.load_flow(args.flow_id)
        claim = backend.current_claim(flow.id)
        doc = show_doc(flow, backend.load_tasks(flow.id), claim.owner if claim else None,
                       backend.load_declines(flow.id))
        is_stranded = stranded(doc, backend.list_replicas())
    if args.json:
        emit(render_json({**doc, "stranded": is_stranded}))
    else:
        emit(render_show(doc, is_stranded))
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        claims = sorted(backend.list_claims(), key=lambda c: (c.claimed_at, c.flow_id))
    rows = [claim_row(c) for c in claims]
    emit(render_json(rows) if args.json else render_claims(rows, time.time()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()
