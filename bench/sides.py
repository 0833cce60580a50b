"""The two systems as the multi-process workloads see them: how to start a
replica (a flowbaton replica or a TaskFlow conductor), how to tell it is
ready, and how to submit the 20-step flow.

Both sides run the same flow shape (``bench/flows.py``,
``peers/taskflow_flows.py``) whose tasks write the shared ledger, so the
trial code in ``trials.py`` measures both in exactly the same way.
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

__all__ = ["Setup", "FlowbatonSide", "TaskflowSide", "STEPS", "STEP_DELAY"]

STEPS = 20
STEP_DELAY = 0.1


@dataclass
class Setup:
    """One trial's place: backend kind, lease, namespace, files."""

    backend: str  # "zookeeper" or "redis"
    lease: float
    folder: Path
    namespace: str = field(default_factory=lambda: f"b{uuid.uuid4().hex[:10]}")
    expiry: bool = True  # TaskFlow on Redis: claims with an expiry (False: the stock conductor)

    @property
    def ledger(self) -> str:
        return str(self.folder / "ledger.jsonl")



class FlowbatonSide:
    name = "flowbaton"

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self._stores: dict[str, Backend] = {}

    def url(self, setup: Setup) -> str:
        if setup.backend == "zookeeper":
            return self.servers.zk_url(setup.namespace)
        return self.servers.redis_url(setup.namespace)

    def prepare(self, setup: Setup) -> None:
        self._stores[setup.namespace] = open_backend(self.url(setup))

    def start_replica(self, setup: Setup, name: str) -> subprocess.Popen[bytes]:
        argv = flowbaton_argv("flowbaton", "--backend", self.url(setup), "replica", "--allow", "bench.",
                              "--concurrency", "1", "--lease", f"{setup.lease:g}", "--replica-id", name)
        return spawn(argv, setup.folder / f"{name}.log")

    def ready(self, setup: Setup, replicas: int) -> bool:
        return len(self._stores[setup.namespace].list_replicas()) >= replicas

    def submit(self, setup: Setup) -> None:
        coord = connect(self._stores[setup.namespace], allow=["bench."], lease=setup.lease)
        coord.submit("bench.flows:steps", kwargs={"count": STEPS, "delay": STEP_DELAY, "ledger": setup.ledger})

    def forget(self, setup: Setup) -> None:
        store = self._stores.pop(setup.namespace, None)
        if store is not None:
            store.close()

    def close(self) -> None:
        for namespace in list(self._stores):
            self._stores.pop(namespace).close()


class TaskflowSide:
    name = "taskflow"

    def __init__(self, servers: Servers, python: Path, logs: Path) -> None:
        self.servers = servers
        self.python = python
        self.poster = Worker(taskflow_argv(python, "taskflow_conductor.py", "post"), logs / "taskflow-poster.log")

    def board(self, setup: Setup) -> dict[str, Any]:
        host, port = self.servers.redis_address
        timeout = setup.lease if setup.backend == "zookeeper" or setup.expiry else 0.0
        return {"board": setup.backend, "zk_hosts": self.servers.zk_hosts, "root": f"/{setup.namespace}",
                "redis": f"{host}:{port}", "timeout": timeout}

    def prepare(self, setup: Setup) -> None:
        self.poster.ask({"op": "open", **self.board(setup)})

    def start_replica(self, setup: Setup, name: str) -> subprocess.Popen[bytes]:
        board = self.board(setup)
        options = [f"--{key.replace('_', '-')}={value}" for key, value in board.items()]
        argv = taskflow_argv(self.python, "taskflow_conductor.py", "conduct", "--name", name,
                             "--ready", str(setup.folder / f"{name}.ready"), *options)
        return spawn(argv, setup.folder / f"{name}.log")

    def ready(self, setup: Setup, replicas: int) -> bool:
        return len(list(setup.folder.glob("*.ready"))) >= replicas

    def submit(self, setup: Setup) -> None:
        self.poster.ask({"op": "post", "ledger": setup.ledger, "count": STEPS, "delay": STEP_DELAY,
                         **self.board(setup)})

    def forget(self, setup: Setup) -> None:
        pass

    def close(self) -> None:
        self.poster.close()
