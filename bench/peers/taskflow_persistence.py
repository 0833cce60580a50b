"""TaskFlow side of workload 1 (persistence overhead), a line-protocol worker.

Command: ``{"op": "run", "kind": "memory"|"sqlite"|"zookeeper", "tasks": N,
"sqlite_path": ..., "zk_hosts": ..., "zk_path": ...}``. Answer: seconds
for ``engines.load`` + ``engine.run`` of a linear flow of N no-op tasks on
that persistence backend (a fresh logbook each run, the serial engine), and
the operations it made, counted not estimated:

- ``logical``: calls of the persistence connection's data methods
  (``update_atom_details``, ``save_logbook``, ``get_flow_details`` ...),
  counted by wrapping each connection the engine asks the backend for;
- ``wire``: ZooKeeper requests (every ``KazooClient._call``, the one door
  each kazoo request and transaction goes through) or SQL statements (a
  trace callback on every ``sqlite3`` connection); 0 on memory.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from common import Calls, count_sqlite_statements, serve_lines
from kazoo.client import KazooClient
from taskflow import engines
from taskflow.persistence import backends
from taskflow_flows import noop_linear

DATA_METHODS = (
    "update_atom_details", "update_flow_details", "save_logbook", "destroy_logbook", "get_logbook",
    "get_logbooks", "get_flows_for_book", "get_flow_details", "get_atom_details", "get_atoms_for_flow",
    "clear_all", "validate", "upgrade",
)

CALLS = Calls()
CALLS.wrap_class(KazooClient, "_call", "wire.zk")
count_sqlite_statements(CALLS, "wire.sql")


def _conf(command: dict[str, Any]) -> dict[str, Any]:
    kind = command["kind"]
    if kind == "memory":
        return {"connection": "memory://"}
    if kind == "sqlite":
        return {"connection": f"sqlite:///{command['sqlite_path']}"}
    if kind == "zookeeper":
        return {"connection": "zookeeper", "hosts": command["zk_hosts"], "path": command["zk_path"]}
    raise ValueError(f"no TaskFlow persistence {kind!r}")


def _counting(backend: Any) -> None:
    """Every connection the backend hands out counts its data-method calls."""
    original = backend.get_connection

    def get_connection() -> Any:
        conn = original()
        for name in DATA_METHODS:
            setattr(conn, name, CALLS.wrap(f"logical.{name}", getattr(conn, name)))
        return conn

    backend.get_connection = get_connection


def run(command: dict[str, Any]) -> dict[str, Any]:
    backend = backends.fetch(_conf(command))
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            conn.upgrade()  # schema set-up is not part of the run
        _counting(backend)
        flow = noop_linear(command["tasks"])
        CALLS.reset()
        started = time.perf_counter()
        engine = engines.load(flow, backend=backend)
        engine.run()
        seconds = time.perf_counter() - started
        counts = dict(CALLS.counts)
        logical, wire = CALLS.total("logical."), CALLS.total("wire.")  # before close adds its own calls
    finally:
        backend.close()
    state = engine.storage.get_flow_state()
    if state != "SUCCESS":
        raise RuntimeError(f"flow ended {state}")
    return {"seconds": seconds, "logical": logical, "wire": wire, "counts": counts}


if __name__ == "__main__":
    serve_lines(run)
