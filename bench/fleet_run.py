"""What every fleet experiment needs: replica processes started and killed
as a group, and the ledger read per flow.

Ledger task names are ``TAG/hold-N`` (``fleet_flows.py``); a flow is its
tag, and the process that noted a line (``pid``) is the replica that ran
it, the same way for both systems.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from .fleet_sides import FleetSide, Place
from .peers.common import read_ledger
from .workers import until

__all__ = ["Replicas", "ReplicaDied", "until", "starts", "ended", "wait_running"]


class ReplicaDied(RuntimeError):
    """A replica exited, or never got ready, before the measurement."""



class Replicas:
    """The replica processes of one experiment; every one still alive is
    killed (SIGKILL, its whole process group) on exit."""

    def __init__(self, side: FleetSide, place: Place) -> None:
        self.side = side
        self.place = place
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        place.folder.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, concurrency: int) -> int:
        self.procs[name] = self.side.start(self.place, name, concurrency)
        return self.procs[name].pid

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def wait_ready(self, count: int, timeout: float = 90.0) -> None:
        def ready() -> bool:
            dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
            if dead:
                raise ReplicaDied(f"{', '.join(dead)} exited; see {self.place.folder}")
            return self.side.ready(self.place, count)

        if not until(ready, timeout, 0.3):
            raise ReplicaDied(f"{count} replicas not ready in {timeout:.0f} s; see {self.place.folder}")

    def check_alive(self) -> None:
        dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
        if dead:
            raise ReplicaDied(f"{', '.join(dead)} exited; see {self.place.folder}")

    def kill(self, name: str) -> float:
        """SIGKILL one replica; the monotonic time just before."""
        now = time.monotonic()
        os.kill(self.procs[name].pid, signal.SIGKILL)
        return now

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    def __enter__(self) -> Replicas:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def starts(ledger: str) -> dict[str, list[tuple[float, int]]]:
    """Flow tag -> every (time, pid) a task of it started, in ledger order."""
    flows: dict[str, list[tuple[float, int]]] = {}
    for line in read_ledger(ledger):
        if line["ev"] == "start":
            flows.setdefault(line["task"].split("/")[0], []).append((line["t"], line["pid"]))
    return flows


def ended(ledger: str, last_task: str) -> set[str]:
    """Tags of the flows whose task ``last_task`` (e.g. ``hold-2``) ended."""
    return {line["task"].split("/")[0] for line in read_ledger(ledger)
            if line["ev"] == "end" and line["task"].endswith(f"/{last_task}")}


def wait_running(place: Place, flows: int, timeout: float) -> None:
    """Until ``flows`` flows have started a task (TimeoutError after ``timeout``)."""
    if not until(lambda: len(starts(place.ledger)) >= flows, timeout, 0.5):
        raise TimeoutError(f"{len(starts(place.ledger))} of {flows} flows running after {timeout:.0f} s; "
                           f"see {place.folder}")
