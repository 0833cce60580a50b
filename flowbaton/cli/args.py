"""Argument types and the ``--allow`` option, shared by every command.

One factory, ``argument_type``, makes every ``type=`` converter: a parser
that raises ``ValueError`` with the sentence to show becomes argparse's usage
error (one line, exit status 2, ``cli.main``). ``checked`` is the common case
of a conversion followed by a rule, refused as "not <what>: 'text'".
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..backends.states import FLOW_STATES
from ..engine.builds import AUTO_BUILD, checked_build
from ..observability.logs import LOG_FORMATS
from ..ops.times import MAX_DURATION, age_of, parse_point

__all__ = [
    "ALLOW_ENV",
    "BUILD_ENV",
    "argument_type",
    "checked",
    "positive_count",
    "positive_seconds",
    "port_number",
    "log_format",
    "log_level",
    "flow_state",
    "time_point",
    "time_age",
    "allow_entries",
    "add_allow_option",
    "build_version",
    "allowed_build",
    "add_build_option",
    "count_arg",
    "add_flow_filters",
    "flow_filters",
]

T = TypeVar("T")

ALLOW_ENV = "FLOWBATON_ALLOW"
BUILD_ENV = "FLOWBATON_BUILD"


def argument_type(name: str, parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` as an argparse ``type=``: its ``ValueError`` message is the
    one line the user sees. ``name`` is what argparse calls the type."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = name
    return convert


def checked(convert: Callable[[str], T], rule: Callable[[T], bool], what: str) -> Callable[[str], T]:
    """``convert``, then ``rule``; either refusing is "not <what>: 'text'"."""

    def parse(text: str) -> T:
        try:
            value = convert(text)
        except ValueError:
            raise ValueError(f"not {what}: {text!r}") from None
        if not rule(value):
            raise ValueError(f"not {what}: {text!r}")
        return value

    return argument_type(what, parse)


def _flow_state(text: str) -> str:
    state = text.upper()
    if state not in FLOW_STATES:
        raise ValueError(f"unknown state {text!r} (one of {', '.join(sorted(FLOW_STATES))})")
    return state


positive_count = checked(int, lambda v: v > 0, "a positive integer")
count_arg = checked(int, lambda v: 0 <= v <= 10**9, "a whole number from 0 to 10^9")
# nan fails every comparison; at most a century (ops.times.MAX_DURATION) keeps
# any wait on it under threading.TIMEOUT_MAX (past it: OverflowError)
positive_seconds = checked(float, lambda v: 0 < v <= MAX_DURATION, "a positive number of seconds up to a century")
port_number = checked(int, lambda v: 0 <= v <= 65535, "a port number")
log_format = checked(str.lower, lambda v: v in LOG_FORMATS, f"one of {', '.join(LOG_FORMATS)}")
log_level = checked(str.upper, lambda v: isinstance(logging.getLevelName(v), int), "a log level")
flow_state = argument_type("state", _flow_state)
#: a wall-clock time: a duration back from now, or an ISO time (``ops.times``)
time_point = argument_type("time", parse_point)
#: seconds since the time named, the same way
time_age = argument_type("time", age_of)


# ------------------------------------------------------------ flow filters

_FILTERS = ("state", "owner", "factory", "name", "since", "before")


def add_flow_filters(cmd: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The filters of ``flows`` (and of bulk actions: the same selection)."""
    cmd.add_argument("--state", type=flow_state, help="only flows in this state")
    cmd.add_argument("--owner", metavar="ID", help="only flows claimed by this replica")
    cmd.add_argument("--factory", metavar="PATTERN",
                     help="only flows whose factory matches (shell pattern: 'billing.*', or the exact name)")
    cmd.add_argument("--name", metavar="PATTERN", help="only flows whose name matches (shell pattern)")
    cmd.add_argument("--since", metavar="T", type=time_point,
                     help="only flows updated since T: a duration back from now (10m, 2h, 1d) or an ISO time")
    cmd.add_argument("--before", metavar="T", type=time_point,
                     help="only flows last updated before T (--before 1d: untouched for a day)")


def flow_filters(args: argparse.Namespace) -> dict[str, Any]:
    """The filters given, as ``ops.query.flows`` keywords (None: not given)."""
    return {name: getattr(args, name, None) for name in _FILTERS}


# ------------------------------------------------------------------ --allow


def allow_entries(text: str) -> list[str]:
    """The prefixes of one comma list."""
    return [p.strip() for p in text.split(",") if p.strip()]


class _Allow(argparse.Action):
    """Repeatable, each a comma list; the first ``--allow`` replaces the
    environment's list instead of adding to it."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        current = getattr(namespace, self.dest)
        kept = [] if current is self.default else list(current)
        setattr(namespace, self.dest, [*kept, *allow_entries(str(values))])


def add_allow_option(cmd: argparse.ArgumentParser, who: str, *, required: bool = True) -> None:
    """``--allow``, required unless ``FLOWBATON_ALLOW`` is set: nothing
    imports a stored factory name without an allow-list (docs/security.md).
    ``required=False`` where the name is the caller's own (``submit``):
    applied when given, as a guard for scripts that pass names along."""
    env_allow = allow_entries(os.environ.get(ALLOW_ENV) or "")
    cmd.add_argument("--allow", action=_Allow, default=env_allow or None, required=required and not env_allow,
                     metavar="PREFIX", help=f"module prefix whose factories {who} may import, or one exact "
                     "factory name pkg.mod:function for a closed list "
                     "(repeatable or comma-separated; default: $FLOWBATON_ALLOW, comma-separated)")


# ------------------------------------------------------------------ --build


def _build(text: str) -> str | None:
    if text == AUTO_BUILD:
        return AUTO_BUILD
    try:
        return checked_build(text.strip() or None, "build")
    except ValueError as err:  # argparse names the option itself
        raise ValueError(str(err).removeprefix("build: ") + f"; an empty value (--build '' or {BUILD_ENV}=) "
                         "leaves it unset") from None


#: ``--build``: a PEP 440 version, "auto" (``connect``'s default), or empty: unset
build_version = argument_type("version", _build)


def _allowed(text: str) -> str:
    try:
        return str(checked_build(text.strip(), "build"))
    except ValueError as err:
        raise ValueError(str(err).removeprefix("build: ")) from None


#: ``retry --allow-build``: a PEP 440 version
allowed_build = argument_type("version", _allowed)


def add_build_option(cmd: argparse.ArgumentParser, what: str) -> None:
    """``--build``, default ``FLOWBATON_BUILD`` (set but empty: unset), else
    "auto". Unlike the other options an empty variable is a value here: it
    is how a deployment says "no build" on purpose."""
    env = os.environ.get(BUILD_ENV)
    cmd.add_argument("--build", type=build_version, metavar="VERSION",
                     default=AUTO_BUILD if env is None else env,
                     help=f"the release of {what}, a PEP 440 version: a flow that newer code "
                     "already ran is never resumed on older code (default: $FLOWBATON_BUILD, else the "
                     "version of the installed distribution that provides the --allow factories; an "
                     "empty value leaves it unset)")
