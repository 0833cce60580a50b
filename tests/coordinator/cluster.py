"""Real replica processes on a shared backend, and ways to watch them.

Replicas are ``python -m flowbaton replica`` subprocesses (or
``connect().serve()`` where a setting has no CLI flag), started in the
repository root with it on PYTHONPATH so the test factories in
``tests.coord_flows`` import. The test process itself only observes: it
reads the backend and the ledger file the tasks append to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.states import TERMINAL_FLOW_STATES
from flowbaton.coordinator import Coordinator
from flowbaton.testing.chaos.setups import sqlite_writers_blocked
from tests.servers import until

REPO = Path(__file__).resolve().parents[2]
STEPS = "tests.coord_flows:steps"
MIXED_STEPS = "tests.coord_flows:mixed_steps"  # every odd step async def

_SERVE = (
    "import logging, sys, flowbaton\n"
    "logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')\n"
    "url, rid, lease, conc, takeovers = sys.argv[1:6]\n"
    "flowbaton.connect(url, replica_id=rid, allow=['tests.'], lease=float(lease),\n"
    "                  max_takeovers=int(takeovers)).serve(concurrency=int(conc))\n"
)
# A replica of one release of the code: its own allow prefix and build ("": unset).
_SERVE_RELEASE = (
    "import logging, sys, flowbaton\n"
    "logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')\n"
    "url, rid, lease, conc, allow, build = sys.argv[1:7]\n"
    "flowbaton.connect(url, replica_id=rid, allow=[allow], lease=float(lease),\n"
    "                  build=build or None).serve(concurrency=int(conc))\n"
)


def env(*first: Path) -> dict[str, str]:
    """The replicas' environment; ``first``: folders ahead of the repository
    on PYTHONPATH (one release of a factory module, see ``spawn_release``)."""
    paths = [*map(str, first), str(REPO), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), PYTHONUNBUFFERED="1")


class Run(NamedTuple):
    """One ledger line: one task execution."""

    flow: str
    task: str
    attempt: int
    epoch: int
    replica: str


def read_runs(ledger: Path, flow_id: str | None = None) -> list[Run]:
    """The task executions ``ledger`` records (all, or those of ``flow_id``)."""
    lines = [line.split() for line in ledger.read_text().splitlines() if line.strip()]
    runs = [Run(f, t, int(a), int(e), r) for f, t, a, e, r in lines]
    return [r for r in runs if flow_id is None or r.flow == flow_id]


@dataclass
class Replica:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Cluster:
    """Replica processes sharing ``url``, one ledger, and an observer backend."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.ledger = folder / "ledger.txt"
        self.ledger.touch()
        self.backend = open_backend(url)
        self.replicas: dict[str, Replica] = {}

    # ------------------------------------------------------------ replicas

    def spawn(self, name: str, *, allow: str = "tests.", lease: float = 2.0, concurrency: int = 2,
              max_takeovers: int | None = None) -> Replica:
        if max_takeovers is None:
            cmd = [sys.executable, "-m", "flowbaton", "--backend", self.url, "replica", "--allow", allow,
                   "--lease", str(lease), "--replica-id", name, "--concurrency", str(concurrency)]
        else:  # no CLI flag for it: the library API, as a host service would call it
            cmd = [sys.executable, "-c", _SERVE, self.url, name, str(lease), str(concurrency), str(max_takeovers)]
        return self._launch(name, cmd, env())

    def spawn_release(self, name: str, code: Path, build: str | None, *, allow: str, lease: float = 2.0,
                      concurrency: int = 2) -> Replica:
        """A replica running the release of the code in folder ``code`` (put
        first on its PYTHONPATH), with build ``build`` (None: unset), through
        the library API as a host service would start it."""
        cmd = [sys.executable, "-c", _SERVE_RELEASE, self.url, name, str(lease), str(concurrency), allow,
               build or ""]
        return self._launch(name, cmd, env(code))

    def _launch(self, name: str, cmd: list[str], environment: dict[str, str]) -> Replica:
        """Start replica ``name`` from the repository, its output in ``name.log``."""
        log = self.folder / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=environment, stdout=out, stderr=subprocess.STDOUT)
        self.replicas[name] = Replica(name, proc, log)
        return self.replicas[name]

    def wait_registered(self, *names: str, timeout: float = 20.0) -> None:
        def ready() -> bool:
            live = {r.replica_id for r in self.backend.list_replicas()}
            return set(names) <= live

        until(ready, timeout, f"replicas {names} to register")

    def close(self) -> None:
        for replica in self.replicas.values():
            if replica.alive():
                replica.signal(signal.SIGCONT)
                replica.signal(signal.SIGKILL)
            replica.proc.wait()
        self.backend.close()

    def logs(self) -> str:
        return "\n".join(f"----- {r.name} (exit {r.proc.poll()})\n{r.log_text()[-4000:]}"
                         for r in self.replicas.values())

    # --------------------------------------------------------------- flows

    def submit(self, n: int = 3, pause: float = 0.05, factory: str = STEPS, **kwargs: Any) -> str:
        coord = Coordinator(self.backend)
        inputs: dict[str, Any] = {"ledger": str(self.ledger)} if factory != "tests.coord_flows:fails" else {}
        if factory in (STEPS, MIXED_STEPS):
            kwargs["n"] = n
            inputs["pause"] = pause
        return coord.submit(factory, kwargs=kwargs, inputs=inputs)

    def state(self, flow_id: str) -> str:
        return self.backend.load_flow(flow_id).state

    def wait_done(self, *flow_ids: str, timeout: float = 30.0) -> None:
        until(lambda: all(self.state(f) in TERMINAL_FLOW_STATES for f in flow_ids), timeout,
              f"{len(flow_ids)} flow(s) to end\n{self.logs()}")

    def runs(self, flow_id: str | None = None) -> list[Run]:
        return read_runs(self.ledger, flow_id)

    def wait_runs(self, flow_id: str, count: int, timeout: float = 20.0) -> list[Run]:
        return until(lambda: len(self.runs(flow_id)) >= count and self.runs(flow_id), timeout,  # type: ignore[no-any-return]
                     f"{count} task starts of flow {flow_id}\n{self.logs()}")

    # ------------------------------------------------------------- sqlite

    def writers_blocked(self) -> bool:
        """True if a (stopped) process holds SQLite's write lock right now."""
        if urlsplit(self.url).scheme != "sqlite":
            return False
        return sqlite_writers_blocked(self.url[len("sqlite:///"):].split("?", 1)[0])


@pytest.fixture
def cluster(shared_backend_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A Cluster on the session's backend, closed after the test; its
    replicas' logs are printed (pytest shows them when the test failed).
    Imported by the conftest of each suite that uses it."""
    made = Cluster(shared_backend_url, tmp_path)
    try:
        yield made
    finally:
        made.close()
        print(made.logs())
