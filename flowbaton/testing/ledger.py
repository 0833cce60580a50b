"""The ledger: an external record of every task execution, outside the store.

The backend records what replicas *wrote*; the ledger records what tasks
*did*, which is what a user's side effects care about. A task appends one
line as it starts, and one as it ends or fails, to a file of its own process
in the folder ``FLOWBATON_CHAOS_LEDGER`` names (the chaos harness sets it for
the replicas it starts). Without that variable ``record`` does nothing, so
instrumented tasks run unchanged in production.

Lines are JSON: flow, task, attempt, epoch, replica, in_doubt, phase
(``start``, ``end``, ``fail``, ``revert``), pid and ``t``, the system-wide
monotonic clock (``CLOCK_MONOTONIC`` on Linux: comparable across processes
on one host, which is where the harness runs). Each line is one ``write`` on
an ``O_APPEND`` descriptor, so a SIGKILL never leaves half a line.

Instrument your own tasks for a chaos run with the ``recorded`` decorator::

    @task(id="charge-card")
    @recorded
    def charge_card(order: str) -> str: ...
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from flowbaton.engine.context import current_task

__all__ = ["ENV", "LedgerEntry", "read_jsonl", "read_ledger", "record", "recorded"]

ENV = "FLOWBATON_CHAOS_LEDGER"

_F = TypeVar("_F", bound=Callable[..., Any])
_lock = threading.Lock()
_fds: dict[tuple[str, int], int] = {}

LedgerEntry = dict[str, Any]


def _fd(folder: str) -> int:
    """One append-only file per process (a forked child gets its own)."""
    key = (folder, os.getpid())
    with _lock:
        if key not in _fds:
            path = os.path.join(folder, f"ledger-{os.getpid()}.jsonl")
            _fds[key] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return _fds[key]


def record(phase: str = "start", **extra: Any) -> None:
    """Append this execution of the current task to the ledger, if one is
    configured. Call it first thing in a task (``phase="start"``), before any
    side effect: an execution the ledger does not show never happened."""
    folder = os.environ.get(ENV)
    if not folder:
        return
    ctx = current_task()
    entry = {
        "flow": ctx.flow_id, "task": ctx.task_id, "attempt": ctx.attempt, "epoch": ctx.epoch,
        "replica": ctx.replica_id, "in_doubt": ctx.in_doubt, "phase": phase,
        "pid": os.getpid(), "t": time.monotonic(), **extra,
    }
    os.write(_fd(folder), (json.dumps(entry, separators=(",", ":")) + "\n").encode())


def recorded(fn: _F) -> _F:
    """Decorate a task function so each execution leaves start and end/fail
    lines. Put it under ``@task``: the signature is kept for input binding."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        record("start")
        try:
            result = fn(*args, **kwargs)
        except BaseException as err:
            record("fail", error=type(err).__name__)
            raise
        record("end")
        return result

    return wrapper  # type: ignore[return-value]


def read_ledger(folder: Path) -> Iterator[LedgerEntry]:
    """Every line of every ledger file in ``folder``; a torn last line (a
    file still being written) is skipped."""
    yield from read_jsonl(folder, "ledger-*.jsonl")


def read_jsonl(folder: Path, pattern: str) -> Iterator[Any]:
    """Every JSON line of the files matching ``pattern`` in ``folder``, in
    name order; a torn line (a file still being written) is skipped."""
    for path in sorted(folder.glob(pattern)):
        for line in path.read_text(errors="replace").splitlines():
            try:
                yield json.loads(line)
            except ValueError:
                continue
