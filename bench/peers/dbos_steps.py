"""DBOS side of the no-op steps figure (workload "dbos"), a line-protocol worker.

Command: ``{"op": "run", "url": system database URL, "tasks": N}``. Each
run launches DBOS on that URL (a fresh SQLite file or Postgres database,
so every run starts from an empty system database), calls one workflow of
N no-op steps, and destroys DBOS again. Answer: seconds for the workflow
call alone (launch and migrations are not part of it, as flowbaton's
figure excludes opening its backend), the SQL statements its ``sqlite3``
connections ran (0 on Postgres), and the ``journal_mode`` and
``synchronous`` those connections actually had: read back from them, not
assumed, because the matched-durability row rests on them.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from common import Calls, count_sqlite_statements, serve_lines
from dbos import DBOS, DBOSConfig

CALLS = Calls()
count_sqlite_statements(CALLS, "wire.sql")
OPENED: list[sqlite3.Connection] = []


def _remember_connections() -> None:
    """Keep every ``sqlite3`` connection opened from now on (after the
    counting patch, which this wraps), to read their settings back."""
    counting = sqlite3.dbapi2.connect

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = counting(*args, **kwargs)
        OPENED.append(conn)
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    sqlite3.dbapi2.connect = connect  # type: ignore[assignment]


@DBOS.step()
def noop() -> None:
    return None


@DBOS.workflow()
def noop_linear(count: int) -> None:
    for _ in range(count):
        noop()


def _settings() -> dict[str, Any]:
    """The settings of the connections DBOS opened (SQLite only)."""
    seen: dict[str, Any] = {}
    for conn in OPENED:
        try:
            seen["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
            seen["synchronous"] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
                conn.execute("PRAGMA synchronous").fetchone()[0]]
        except sqlite3.ProgrammingError:  # closed by DBOS.destroy already
            continue
    return seen


def run(command: dict[str, Any]) -> dict[str, Any]:
    config: DBOSConfig = {"name": "flowbaton-bench", "system_database_url": command["url"],
                          "log_level": "WARNING"}
    OPENED.clear()
    DBOS(config=config)
    DBOS.launch()
    try:
        CALLS.reset()
        started = time.perf_counter()
        noop_linear(command["tasks"])
        seconds = time.perf_counter() - started
        wire = CALLS.total("wire.")
        settings = _settings()
    finally:
        DBOS.destroy()
    return {"seconds": seconds, "wire": wire, "settings": settings}


if __name__ == "__main__":
    _remember_connections()
    serve_lines(run)
