"""Fair sharing: which replica claims a runnable flow first.

Without a rule, the replica that polls first takes everything it has room
for: after a burst of submits, or when a replica dies and its flows are
orphaned at once, one survivor hogs the board while the others idle. The
rule, documented in docs/design.md ("Sharing"):

* A runnable flow's *home* is the live replica ranked first for it by
  rendezvous hashing of (flow id, replica id). Every replica computes the
  same home from the same list, without talking to the others, and a
  replica joining or leaving moves only its own share of the flows.
* The home claims the flow as soon as it sees it. Any other replica claims
  it once it has seen it waiting for ``handoff`` seconds: a home that is
  full, slow or dead (still listed until its presence lapses) delays a
  flow by that much at most, and work spills over to free capacity.

So flows spread evenly (each replica gets about 1/R of them: binomially,
within a few percent for hundreds of flows) and replicas rarely race for
the same flow. The live replicas are read from the presence records at
most every ``refresh`` seconds, and only when there is work to share.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

from ..backends.base import Backend
from ..backends.errors import FlowbatonError

__all__ = ["Sharing", "default_handoff", "home_of"]

log = logging.getLogger("flowbaton.coordinator")


def default_handoff(lease: float) -> float:
    """How long a flow waits for its home before anyone takes it: an eighth
    of the lease, between 0.1 and 1 s (well inside the takeover targets)."""
    return min(1.0, max(0.1, lease / 8))


def _rank(flow_id: str, replica_id: str) -> int:
    digest = hashlib.blake2b(f"{flow_id}\0{replica_id}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big")


def home_of(flow_id: str, replicas: list[str]) -> str:
    """The replica ranked first for ``flow_id`` (rendezvous hashing)."""
    return max(replicas, key=lambda replica: _rank(flow_id, replica))


class Sharing:
    """One replica's view: the live replicas, and when it first saw each
    candidate flow waiting."""

    def __init__(self, backend: Backend, replica_id: str, *, handoff: float, refresh: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.replica_id = replica_id
        self.handoff = handoff
        self.refresh = refresh
        self._clock = clock
        self._replicas: list[str] = [replica_id]
        self._read_at = -float("inf")
        self._first_seen: dict[str, float] = {}

    def claimable(self, candidates: list[str]) -> tuple[list[str], float | None]:
        """Of ``candidates`` (in the order to try them), those this replica
        may claim now, its own first; and the seconds until the next other
        flow may be claimed (None if none waits)."""
        now = self._clock()
        self._first_seen = {f: self._first_seen.get(f, now) for f in candidates}
        if not candidates:
            return [], None
        replicas = self._live(now)
        mine, due, waiting = [], [], []
        for flow_id in candidates:
            left = self._first_seen[flow_id] + self.handoff - now
            if home_of(flow_id, replicas) == self.replica_id:
                mine.append(flow_id)
            elif left <= 0:
                due.append(flow_id)
            else:
                waiting.append(left)
        return mine + due, (min(waiting) if waiting else None)

    def _live(self, now: float) -> list[str]:
        if now - self._read_at >= self.refresh:
            self._read_at = now
            try:
                found = {info.replica_id for info in self.backend.list_replicas()}
            except FlowbatonError as err:
                log.info("replica list unavailable, sharing by the last one read: %s", err,
                         extra={"replica_id": self.replica_id})
            else:
                self._replicas = sorted(found | {self.replica_id})
        return self._replicas
