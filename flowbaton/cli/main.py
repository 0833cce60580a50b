"""``flowbaton``: run a replica, submit flows, and look at them.

The parser and the error policy live here; commands are in ``commands``
(replica, submit, demo), ``ops_commands`` (the operator commands) and
``ui`` (the web view),
argument types in ``args``, rendering in ``views``/``ops_views``. Exit status: 0 ok, 1
``check`` found a problem (or ``submit --wait`` saw the flow fail), 2 bad
input: any bad input (unknown flow, unreachable backend, malformed JSON,
bad URL, an action that does not apply) ends with one line on stderr, so
scripts can tell "you asked wrongly" from "it failed".
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .._version import __version__
from ..backends import DEFAULT_URL
from ..backends.base import SETTINGS_EVENT, Backend
from ..backends.errors import FlowbatonError
from ..coordinator.opening import WrapBackend
from .args import add_allow_option, add_build_option, positive_seconds
from .commands import cmd_demo, cmd_replica, cmd_submit
from .common import UsageError
from .completion import SHELLS, completion_script
from .ops_commands import add_ops_commands
from .replica import add_replica_options
from .terminal import printable
from .ui import add_ui_command

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        # printable: argparse repeats the argument as typed, control characters too
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


def _backend_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--backend", metavar="URL", default=default,
                        help=f"backend URL (default: $FLOWBATON_BACKEND, else {DEFAULT_URL})")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flowbaton", description="Flows that survive the death of the server running them.")
    parser.add_argument("--version", action="version", version=f"flowbaton {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log what the command does, the drivers' (kazoo, redis) own messages included")
    _backend_option(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _add_replica(sub)
    _add_submit(sub)
    add_ops_commands(lambda name, help_text: _command(sub, name, help_text))
    add_ui_command(lambda name, help_text: _command(sub, name, help_text))
    demo = sub.add_parser("demo", help="watch a replica die with SIGKILL and another finish its flow")
    demo.add_argument("--keep", type=Path, metavar="DIR",
                      help="keep the demo's SQLite store in DIR (to look at it with show --timeline or ui)")
    demo.set_defaults(func=cmd_demo)
    completion = sub.add_parser("completion", help="print a shell completion script (bash; zsh with bashcompinit)")
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(func=lambda args: _print_completion(parser, args.shell))
    return parser


def _print_completion(parser: argparse.ArgumentParser, shell: str) -> int:
    sys.stdout.write(completion_script(parser, shell))
    return 0


def _command(sub: argparse._SubParsersAction[_Parser], name: str, help_text: str) -> _Parser:
    cmd = sub.add_parser(name, help=help_text, description=help_text)
    _backend_option(cmd, argparse.SUPPRESS)  # accepted before or after the command
    return cmd


def _add_replica(sub: argparse._SubParsersAction[_Parser]) -> None:
    cmd = _command(sub, "replica", "run a replica until SIGTERM/SIGINT (then hand flows over gracefully)")
    add_replica_options(cmd)  # each flag falls back to a FLOWBATON_* environment variable
    cmd.set_defaults(func=cmd_replica)


def _add_submit(sub: argparse._SubParsersAction[_Parser]) -> None:
    cmd = _command(sub, "submit", "store a new flow; prints its id")
    cmd.add_argument("factory", metavar="FACTORY", help="package.module:function returning the flow")
    add_allow_option(cmd, "submit", required=False)
    add_build_option(cmd, "the code submitting the flow (the flow records it)")
    cmd.add_argument("--args", metavar="JSON", help="factory positional arguments, a JSON list")
    cmd.add_argument("--kwargs", metavar="JSON", help="factory keyword arguments, a JSON object")
    cmd.add_argument("--inputs", metavar="JSON", help="initial flow inputs, a JSON object")
    cmd.add_argument("--name", help="a name for people (default: the flow's own name)")
    cmd.add_argument("--by-name", action="store_true",
                     help="the factory's code is not importable here (an ops host): store its name and the JSON "
                          "values without importing it; the replicas validate it when they build the flow (one "
                          "that cannot is declined: see `flowbaton flows --stranded`)")
    cmd.add_argument("--wait", action="store_true", help="wait until the flow ends; exit 1 unless SUCCESS")
    cmd.add_argument("--timeout", type=positive_seconds, default=None, help="with --wait: give up after S seconds")
    cmd.set_defaults(func=cmd_submit)


def main(argv: Sequence[str] | None = None, *, backend: Backend | None = None,
         wrap_backend: WrapBackend | None = None) -> int:
    """Run one command. ``backend``: work on this open backend instead of
    ``--backend`` (it stays open); for memory:// tests and embedding.
    ``wrap_backend``: what ``replica`` wraps around the backend it opens
    (the chaos harness records every call: ``testing.chaos.replica_entry``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    unreadable = _not_text(argv)
    if unreadable is not None:
        print(f"flowbaton: error: argument {printable(unreadable)} is not valid UTF-8 text", file=sys.stderr)
        return EXIT_BAD_INPUT
    args = build_parser().parse_args(argv)
    args.backend_object = backend
    args.wrap_backend = wrap_backend
    # Like `python -m`, find factories in the current directory: the console
    # script alone would only see installed packages.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if args.verbose and args.func is not cmd_replica:  # a replica configures its own logging
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    held = _HeldWarnings() if args.func is not cmd_replica and not args.verbose else None
    try:
        code: int = args.func(args)
    except (FlowbatonError, UsageError) as err:
        print(f"flowbaton: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    finally:
        if held is not None:
            held.detach()
    if held is not None:
        held.show()
    return code


def _not_text(argv: Sequence[str]) -> str | None:
    """The first argument no store could hold: Python hands undecodable
    command-line bytes over as lone surrogates, which no backend can encode
    (SQLite raised UnicodeEncodeError deep in a query). Checked once here
    for every command and option."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg
    return None


class _HeldWarnings(logging.Handler):
    """Library warnings during a one-shot command, held back: on failure the
    single error line says it all (a driver's retry-by-retry log would bury
    it); on success they are shown, e.g. a corrupt record a listing skipped."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        self.logger = logging.getLogger("flowbaton")
        self.logger.addHandler(self)
        self.logger.propagate = False
        # kazoo's own reconnect chatter ("Connection dropped" per attempt) is
        # dropped: the command's one line, or its result, says what matters.
        self.kazoo = logging.getLogger("kazoo")
        self.quiet = logging.NullHandler()
        self.kazoo.addHandler(self.quiet)
        self.kazoo.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == SETTINGS_EVENT:
            return  # unsafe server settings: `check` and `replicas` report them, not every command
        message = _one_line(Exception(record.getMessage()))
        if message not in self.messages:
            self.messages.append(message)

    def detach(self) -> None:
        self.logger.removeHandler(self)
        self.logger.propagate = True
        self.kazoo.removeHandler(self.quiet)
        self.kazoo.propagate = True

    def show(self) -> None:
        for message in self.messages:
            print(f"flowbaton: warning: {message}", file=sys.stderr)


def _one_line(err: BaseException) -> str:
    return printable(" ".join(str(err).split())) or type(err).__name__
