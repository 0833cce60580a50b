"""Mass takeover and fairness: three replicas of one system on one backend.

**Takeover.** One replica (lease 4 s) is started alone and claims all N
flows (three tasks of an hour each); then two more start, and once they
are ready the first gets SIGKILL. For each of its flows: seconds from the
kill to the first task a survivor starts (the in-doubt task run again), and
which survivor took it. A flow not resumed within lease + 60 s has none.

**Fairness.** Three replicas, each able to run every flow at once, are
ready before N flows of three 0.1 s tasks are submitted as fast as the
client can; once all have ended, the flows each replica ran (the process
that started a flow's first task).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .fleet_run import Replicas, ended, starts, until, wait_running
from .fleet_sides import FleetSide, Place
from .servers import Servers

__all__ = ["Takeover", "takeover", "fairness", "TAKEOVER_LEASE"]

TAKEOVER_LEASE = 4.0
TAKEOVER_CAP = 60.0  # seconds beyond the lease before a flow counts as never taken over (TaskFlow needs ~30)
HOLD = 3600.0
CLAIM_TIMEOUT = 900.0  # the first replica claiming every flow (TaskFlow posts ~25 ms a job)
FAIR_TASKS = 3
FAIR_DELAY = 0.1
FAIR_TIMEOUT = 300.0


@dataclass
class Takeover:
    """Per victim flow, seconds from the kill to a survivor's first start
    (None: never within the cap); the survivors' shares."""

    delays: list[float | None] = field(default_factory=list)
    shares: list[int] = field(default_factory=list)  # flows per survivor, fewest first
    folder: Path | None = None  # ledger and replica logs (kept by the caller if a flow was never resumed)


def _resumed(place: Place, victim: int, killed: float) -> dict[str, tuple[float, int]]:
    """Victim flow tag -> (first start by another process after the kill, its pid)."""
    resumed = {}
    for tag, lines in starts(place.ledger).items():
        if any(pid == victim for _, pid in lines):
            later = [(t, pid) for t, pid in lines if pid != victim and t > killed]
            if later:
                resumed[tag] = min(later)
    return resumed


def takeover(side: FleetSide, servers: Servers, backend: str, flows: int) -> Takeover:
    place = Place(backend, TAKEOVER_LEASE, servers.scratch(f"{side.name}-takeover-{backend}"))
    with Replicas(side, place) as group:
        victim = group.start("victim", flows)
        group.wait_ready(1)
        side.submit(place, flows, 3, HOLD)
        wait_running(place, flows, CLAIM_TIMEOUT)
        survivors = [group.start(name, flows) for name in ("s1", "s2")]
        group.wait_ready(3)
        time.sleep(1.0)
        group.check_alive()
        killed = group.kill("victim")
        owned = {tag for tag, lines in starts(place.ledger).items() if any(pid == victim for _, pid in lines)}
        until(lambda: len(_resumed(place, victim, killed)) >= len(owned), TAKEOVER_LEASE + TAKEOVER_CAP, 0.2)
        resumed = _resumed(place, victim, killed)
    delays = [resumed[tag][0] - killed if tag in resumed else None for tag in sorted(owned)]
    by_pid = Counter(pid for _, pid in resumed.values())
    return Takeover(delays, sorted(by_pid.get(pid, 0) for pid in survivors), place.folder)


def fairness(side: FleetSide, servers: Servers, backend: str, flows: int) -> list[int]:
    """Flows run by each of the three replicas, fewest first."""
    place = Place(backend, 10.0, servers.scratch(f"{side.name}-fair-{backend}"))
    with Replicas(side, place) as group:
        pids = [group.start(f"r{n}", flows) for n in (1, 2, 3)]
        group.wait_ready(3)
        side.submit(place, flows, FAIR_TASKS, FAIR_DELAY)
        last = f"hold-{FAIR_TASKS - 1}"
        if not until(lambda: len(ended(place.ledger, last)) >= flows, FAIR_TIMEOUT, 0.5):
            raise TimeoutError(f"{len(ended(place.ledger, last))} of {flows} flows done after "
                               f"{FAIR_TIMEOUT:.0f} s; see {place.folder}")
        first = {tag: min(lines)[1] for tag, lines in starts(place.ledger).items()}
    by_pid = Counter(first.values())
    return sorted(by_pid.get(pid, 0) for pid in pids)
