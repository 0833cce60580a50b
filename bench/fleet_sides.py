"""The two systems as the fleet workload sees them: start a replica (a
``flowbaton replica`` process / a TaskFlow non-blocking conductor) able to
run many flows at once, tell when replicas are ready, submit many flows of
the ``holds`` shape (``fleet_flows.py``, ``peers/taskflow_fleet_flows.py``).

Submitting leaves no connection open: the Redis counter of the coordination
figure is the whole server's, so only the measured replica may talk to it.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowbaton import connect
from flowbaton.backends import Backend, open_backend

from .servers import Servers
from .workers import Worker, flowbaton_argv, spawn, taskflow_argv

__all__ = ["Place", "FlowbatonFleet", "TaskflowFleet", "FleetSide"]


@dataclass
class Place:
    """One experiment's backend kind, lease, namespace and files."""

    backend: str  # "zookeeper" or "redis"
    lease: float
    folder: Path
    namespace: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:10]}")

    @property
    def ledger(self) -> str:
        return str(self.folder / "ledger.jsonl")



class FlowbatonFleet:
    name = "flowbaton"

    def __init__(self, servers: Servers) -> None:
        self.servers = servers

    def url(self, place: Place) -> str:
        if place.backend == "zookeeper":
            return self.servers.zk_url(place.namespace)
        return self.servers.redis_url(place.namespace)

    def start(self, place: Place, name: str, concurrency: int) -> subprocess.Popen[bytes]:
        argv = flowbaton_argv("flowbaton", "--backend", self.url(place), "replica", "--allow", "bench.",
                              "--concurrency", str(concurrency), "--lease", f"{place.lease:g}",
                              "--replica-id", name)
        return spawn(argv, place.folder / f"{name}.log")

    def ready(self, place: Place, replicas: int) -> bool:
        with _store(self.url(place)) as store:
            return len(store.list_replicas()) >= replicas

    def submit(self, place: Place, count: int, tasks: int, seconds: float, prefix: str = "") -> None:
        with _store(self.url(place)) as store:
            coord = connect(store, allow=["bench."], lease=place.lease)
            for n in range(count):
                coord.submit("bench.fleet_flows:holds", kwargs={"tag": f"{prefix}{n:04d}", "count": tasks,
                                                                 "seconds": seconds, "ledger": place.ledger})

    def close(self) -> None:
        pass


class _store:
    """A backend opened for one errand and closed right after."""

    def __init__(self, url: str) -> None:
        self.backend: Backend = open_backend(url)

    def __enter__(self) -> Backend:
        return self.backend

    def __exit__(self, *exc: object) -> None:
        self.backend.close()


class TaskflowFleet:
    name = "taskflow"

    def __init__(self, servers: Servers, python: Path, logs: Path) -> None:
        self.servers = servers
        self.python = python
        self.logs = logs

    def board(self, place: Place) -> dict[str, Any]:
        host, port = self.servers.redis_address
        return {"board": place.backend, "zk_hosts": self.servers.zk_hosts, "root": f"/{place.namespace}",
                "redis": f"{host}:{port}", "timeout": place.lease}

    def start(self, place: Place, name: str, concurrency: int) -> subprocess.Popen[bytes]:
        options = [f"--{key.replace('_', '-')}={value}" for key, value in self.board(place).items()]
        argv = taskflow_argv(self.python, "taskflow_fleet.py", "conduct", "--name", name, "--jobs",
                             str(concurrency), "--ready", str(place.folder / f"{name}.ready"), *options)
        return spawn(argv, place.folder / f"{name}.log")

    def ready(self, place: Place, replicas: int) -> bool:
        return len(list(place.folder.glob("*.ready"))) >= replicas

    def submit(self, place: Place, count: int, tasks: int, seconds: float, prefix: str = "") -> None:
        poster = Worker(taskflow_argv(self.python, "taskflow_fleet.py", "post"), self.logs / "taskflow-fleet.log")
        try:
            poster.ask({"op": "post", "count": count, "tasks": tasks, "seconds": seconds, "ledger": place.ledger,
                        "prefix": prefix, **self.board(place)}, wait=900.0)
        finally:
            poster.close()

    def close(self) -> None:
        pass


FleetSide = FlowbatonFleet | TaskflowFleet
