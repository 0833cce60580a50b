"""What both sides of a benchmark share: the task ledger, the line protocol,
operation counters and memory readings. Standard library only (it is
imported inside the TaskFlow virtualenv too).

Ledger: one JSON object per line, appended with one ``write`` on a file
opened ``O_APPEND`` (whole lines, even with several processes appending):
``{"t": monotonic seconds, "pid": ..., "task": ..., "ev": "start"|"end"}``.
``time.monotonic`` is one system-wide clock on Linux, so times taken in
different processes compare directly.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sqlite3.dbapi2
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "Calls",
    "count_sqlite_statements",
    "note",
    "read_ledger",
    "rss_mib",
    "serve_lines",
]


def note(ledger: str, event: str, task: str) -> None:
    """Append one ledger line for ``task`` (``event`` is start or end)."""
    line = json.dumps({"t": time.monotonic(), "pid": os.getpid(), "task": task, "ev": event}) + "\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_ledger(ledger: str) -> list[dict[str, Any]]:
    """Every complete line so far (a line being written is skipped)."""
    try:
        with open(ledger, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def rss_mib(pid: int | str = "self") -> float:
    """Resident memory of a process, in MiB (from /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Calls:
    """Counts calls by name; ``wrap`` puts a counting shim around a callable."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            return original(*args, **kwargs)

        return counted

    def wrap_class(self, cls: type, method: str, name: str) -> None:
        """Count every call of ``cls.method`` in this process (all instances)."""
        setattr(cls, method, self.wrap(name, getattr(cls, method)))

    def total(self, prefix: str = "") -> int:
        return sum(n for key, n in self.counts.items() if key.startswith(prefix))

    def reset(self) -> None:
        self.counts.clear()


def count_sqlite_statements(calls: Calls, name: str = "sql") -> None:
    """Count every SQL statement run by any ``sqlite3`` connection opened from
    now on (BEGIN and COMMIT included), whoever opens it: flowbaton's driver
    and SQLAlchemy's both call ``sqlite3.connect``."""
    original = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = original(*args, **kwargs)
        conn.set_trace_callback(lambda _statement: calls.counts.update((name,)))
        return conn

    # SQLAlchemy calls ``sqlite3.dbapi2.connect``, a name of its own.
    sqlite3.connect = connect  # type: ignore[assignment]
    sqlite3.dbapi2.connect = connect  # type: ignore[assignment]


def serve_lines(handle: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """The worker side of the line protocol: one JSON command per stdin
    line, one JSON answer per stdout line, until EOF or ``{"op": "quit"}``.
    Anything a driver prints itself goes to stderr, so stdout stays clean."""
    out = sys.stdout
    sys.stdout = sys.stderr
    for line in _lines(sys.stdin):
        command = json.loads(line)
        if command.get("op") == "quit":
            break
        try:
            answer = handle(command)
        except Exception as err:  # reported to the bench, which fails the figure loudly
            answer = {"error": f"{type(err).__name__}: {err}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


def _lines(stream: Any) -> Iterator[str]:
    while True:
        line = stream.readline()
        if not line:
            return
        if line.strip():
            yield line
