"""flowbaton side of workload 1 (persistence overhead), a line-protocol worker.

Command: ``{"op": "run", "url": backend URL, "tasks": N}``. Answer: seconds
for ``flowbaton.run`` of a linear flow of N no-op tasks (create, claim, run,
release: the whole life of one flow) on an already opened backend, and the
operations it made, counted not estimated:

- ``logical``: calls of the Backend contract's methods, counted by wrapping
  each one on the backend object;
- ``wire``: round trips under the driver: ZooKeeper requests (every
  ``KazooClient._call``; a ``multi`` is one), Redis commands or pipelines
  sent (every ``send_packed_command``) or SQL statements (a trace callback
  on every ``sqlite3`` connection, BEGIN and COMMIT included); 0 on memory.

The same counting doors as TaskFlow's driver (``peers/taskflow_persistence.py``).
"""

from __future__ import annotations

import time
from typing import Any

import flowbaton
from flowbaton.backends import Backend, open_backend

from .peers.common import Calls, count_sqlite_statements, serve_lines

CALLS = Calls()
count_sqlite_statements(CALLS, "wire.sql")


def _count_clients() -> None:
    from kazoo.client import KazooClient
    from redis.connection import AbstractConnection

    CALLS.wrap_class(KazooClient, "_call", "wire.zk")
    CALLS.wrap_class(AbstractConnection, "send_packed_command", "wire.redis")


def _contract_methods() -> list[str]:
    abstract: frozenset[str] = getattr(Backend, "__abstractmethods__", frozenset())
    # save_task (one record) has a body in the ABC, a list of one for the
    # abstract save_tasks that it calls through the class, so an instance
    # wrapper of each counts every contract write exactly once.
    return [*sorted(name for name in abstract if name != "from_url"), "save_task", "wait_for_work"]


def _counting(backend: Backend) -> None:
    for name in _contract_methods():
        setattr(backend, name, CALLS.wrap(f"logical.{name}", getattr(backend, name)))


def run(command: dict[str, Any]) -> dict[str, Any]:
    backend = open_backend(command["url"])
    try:
        _counting(backend)
        CALLS.reset()
        started = time.perf_counter()
        report = flowbaton.run("bench.flows:noop_linear", kwargs={"count": command["tasks"]},
                               backend=backend, allow=["bench."])
        seconds = time.perf_counter() - started
        counts = dict(CALLS.counts)
        logical, wire = CALLS.total("logical."), CALLS.total("wire.")  # before close adds its own calls
        stored = stored_bytes(backend, report.id)
    finally:
        backend.close()
    if report.state != "SUCCESS":
        raise RuntimeError(f"flow ended {report.state}")
    return {"seconds": seconds, "logical": logical, "wire": wire,
            "counts": counts, **stored}


def stored_bytes(backend: Backend, flow_id: str) -> dict[str, int]:
    """Bytes of the flow's records as stored (their JSON, what every
    backend measures against ``max_record_bytes``): the flow record, and
    all task records together."""
    tasks = backend.load_tasks(flow_id).values()
    return {"flow_bytes": len(backend.load_flow(flow_id).to_json().encode()),
            "task_bytes": sum(len(t.to_json().encode()) for t in tasks)}


if __name__ == "__main__":
    _count_clients()
    serve_lines(run)
