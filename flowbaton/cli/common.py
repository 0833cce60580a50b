"""What every command shares: the backend it works on, how it prints, and
the error for bad input argparse cannot see.

Kept apart from the commands themselves so the operator commands
(``ops_commands``) need neither the replica runtime nor the demo.
Errors are raised, not printed: ``cli.main`` turns every ``FlowbatonError``
and ``UsageError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

from ..backends import DEFAULT_PATH, default_url, existing_default_url, open_backend
from ..backends.base import Backend

__all__ = ["UsageError", "backend_url", "existing_url", "opened", "emit", "impatient_options"]



class UsageError(Exception):
    """Bad command-line input that argparse cannot see (e.g. malformed JSON)."""


def backend_url(args: argparse.Namespace) -> str:
    return str(getattr(args, "backend", None) or default_url())


def existing_url(args: argparse.Namespace) -> str:
    """``backend_url`` for a command that reads or changes flows already
    stored: with neither ``--backend`` nor ``FLOWBATON_BACKEND``, the default
    SQLite file must exist. Else the command would create an empty store and
    report on it ("no flows", "check: OK"), hiding that it looked in the
    wrong place."""
    if not getattr(args, "backend", None) and existing_default_url() is None:
        raise UsageError(f"no backend given and {DEFAULT_PATH} does not exist here: pass --backend URL or "
                         "set FLOWBATON_BACKEND (this command does not create a store)")
    return backend_url(args)


@contextmanager
def opened(args: argparse.Namespace) -> Iterator[Backend]:
    """The backend the command works on: the one ``main(backend=...)`` was
    given (left open; memory:// tests, embedding), else one opened here."""
    given: Backend | None = getattr(args, "backend_object", None)
    if given is not None:
        yield given
        return
    url = existing_url(args)
    backend = open_backend(url, **impatient_options(url))
    try:
        yield backend
    finally:
        backend.close()


#: How long an operator command waits for a backend that does not answer
#: (a refused connection, no ZooKeeper session) before saying so: with the
#: interpreter's start, its one line comes within 2 s. A URL that sets the
#: option keeps its own value.
CLI_PATIENCE = 0.8


def impatient_options(url: str) -> dict[str, float]:
    """Options for a person waiting at a terminal, unless the URL sets them:
    Redis retries refused connections and timeouts for ``CLI_PATIENCE``
    seconds, not the 10 s a replica waits out a server restart with, and
    ZooKeeper gives up on a first session as soon."""
    try:
        parts = urlsplit(url)
    except ValueError:  # malformed: open_backend says so, in its one line
        return {}
    given = parse_qs(parts.query)
    if parts.scheme.startswith("redis") and "retry_deadline" not in given:
        return {"retry_deadline": CLI_PATIENCE}
    if parts.scheme == "zookeeper" and "connect_timeout" not in given:
        return {"connect_timeout": CLI_PATIENCE}
    return {}


def emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
