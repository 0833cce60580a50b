"""Aggregate throughput of a few replicas on one backend: ``REPLICAS``
``flowbaton replica`` processes, ``CONCURRENCY`` flows each at once, fed
batches of short flows of no-op tasks (``cluster_flows.py``).

The replicas are started once and kept for every batch of the workload:
starting four interpreters costs seconds on two cores, more than a batch,
and a replica is bound to one namespace, so every batch of a fleet shares
its namespace (earlier batches' flows are finished and leave no runnable
index entries behind).

A batch's clock runs from its first submission to the last flow's ledger
line; submission (one client, in this process) overlaps the running, as it
would in use. Counters are read just before the first submission and
``SETTLE`` seconds after the last line, so each flow's final write and
release, which follow its last task, are counted too.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from flowbaton import connect
from flowbaton.backends import open_backend

from .cluster_probe import Server, Snapshot, snapshot
from .fleet_run import ReplicaDied
from .peers.common import read_ledger
from .workers import flowbaton_argv, spawn, until

__all__ = ["Batch", "Fleet", "REPLICAS", "CONCURRENCY", "TASKS"]

REPLICAS = 4
CONCURRENCY = 50
TASKS = 10  # per flow: enough to be a flow, few enough that claims and releases weigh
SETTLE = 0.5
BATCH_TIMEOUT = 300.0


@dataclass(frozen=True)
class Batch:
    """One batch: its size, seconds from first submission to last flow done,
    and what the servers and processes did meanwhile."""

    flows: int
    tasks: int
    seconds: float
    usage: Snapshot


class Fleet:
    """``REPLICAS`` replica processes on ``url``; every one stopped on ``close``."""

    def __init__(self, name: str, url: str, folder: Path, logs: Path, servers: list[Server]) -> None:
        self.name = name
        self.url = url
        self.folder = folder  # ledgers
        self.logs = logs  # the replicas' logs, kept after the run
        self.servers = servers
        self.procs: list[subprocess.Popen[bytes]] = []
        self.batches = 0

    def start(self) -> None:
        for n in range(REPLICAS):
            argv = flowbaton_argv("flowbaton", "--backend", self.url, "replica", "--allow", "bench.",
                                  "--concurrency", str(CONCURRENCY), "--replica-id", f"{self.name}-{n}",
                                  "--log-level", "WARNING")
            self.procs.append(spawn(argv, self.logs / f"cluster-{self.name}-{n}.log"))

    def wait_ready(self, timeout: float = 120.0) -> None:
        with open_backend(self.url) as store:
            def ready() -> bool:
                self.check_alive()
                return len(store.list_replicas()) >= REPLICAS

            if not until(ready, timeout, 0.3):
                raise ReplicaDied(f"{self.name}: {REPLICAS} replicas not ready in {timeout:.0f} s; see {self.logs}")

    def check_alive(self) -> None:
        dead = [proc.pid for proc in self.procs if proc.poll() is not None]
        if dead:
            raise ReplicaDied(f"{self.name}: replica process(es) {dead} exited; see {self.logs}")

    def batch(self, flows: int, tasks: int = TASKS) -> Batch:
        self.batches += 1
        ledger = self.folder / f"{self.name}-batch{self.batches}.jsonl"
        pids = [proc.pid for proc in self.procs]
        with open_backend(self.url) as store:  # opened before the first reading: its start-up is not counted
            coord = connect(store, allow=["bench."])
            before = snapshot(self.servers, pids)
            started = time.monotonic()
            for n in range(flows):
                coord.submit("bench.cluster_flows:noop_noted",
                             kwargs={"tag": f"{self.batches}-{n}", "count": tasks, "ledger": str(ledger)})
        last = self._wait_done(ledger, flows)
        time.sleep(SETTLE)
        return Batch(flows, tasks, last - started, snapshot(self.servers, pids) - before)

    def _wait_done(self, ledger: Path, flows: int) -> float:
        """Until the ledger has a line per flow; the last line's time."""
        def done() -> bool:
            self.check_alive()
            return ledger.exists() and ledger.read_bytes().count(b"\n") >= flows

        if not until(done, BATCH_TIMEOUT, 0.02):
            raise TimeoutError(f"{self.name}: not all {flows} flows done in {BATCH_TIMEOUT:.0f} s; see {self.logs}")
        return max(float(line["t"]) for line in read_ledger(str(ledger)))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
