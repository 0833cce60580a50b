"""Handing flows back when an operator asks, instead of fencing the owner.

``flowbaton release FLOW_ID`` (without ``--force``) and ``flowbaton drain
REPLICA_ID`` file a request in the owner's mailbox (``Backend.request_handover``).
The owner's lease keeper reads the mailbox once per beat (every lease/3,
one round trip however many claims: the cost per replica stays flat) and
acts on what is addressed to what it holds now:

- a flow request about the claim it holds (same epoch) stops that claim's
  gate: the runner starts no further task, lets the running ones finish
  and record their results, and hands the flow back; the worker releases
  it, clears the request and leaves the flow alone here for a lease, so
  another replica takes it. Nothing runs twice: the claim is never forced.
- a drain about this incarnation (same ``started_at``) stops every held
  gate at each beat and makes the replica claim nothing more, until the
  request is cleared (``flowbaton drain --undo``) or the process ends.

A request about something this replica does not hold (another epoch,
another incarnation, a flow it never claimed within a lease of first
seeing the request) is moot and cleared, so mailboxes do not fill with
requests nobody will act on. The grace of a lease covers a claim granted
but not tracked yet when the request is first read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..backends.base import Backend
from ..backends.errors import FlowbatonError
from ..backends.records import Handover
from ..engine.claim import Claim
from .lease import LeasedGate

__all__ = ["Mailbox"]

log = logging.getLogger("flowbaton.coordinator")


class Mailbox:
    """One replica's handover requests, as its lease keeper reads them."""

    def __init__(self, backend: Backend, replica_id: str, started_at: float, lease: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.replica_id = replica_id
        self.started_at = started_at
        self.lease = lease
        self._clock = clock
        self._lock = threading.Lock()
        self._asked: dict[str, Handover] = {}  # flow id -> the request its gate was stopped for
        self._unheld_since: dict[str, float] = {}  # flow id -> when a request about it was first seen unheld
        self._drain: Handover | None = None
        #: told the drain this replica obeys from now on (None: it claims
        #: again), so its presence can say so (``ReplicaInfo.draining_since``)
        self.on_drain: Callable[[Handover | None], None] = lambda drain: None

    @property
    def draining(self) -> Handover | None:
        """The drain request this replica obeys now, if any."""
        return self._drain

    def check(self, held: Sequence[Claim[LeasedGate]]) -> None:
        """Read the mailbox once and act on it (see the module docstring)."""
        requests = self.backend.load_handovers(self.replica_id)
        claims = {claim.flow_id: claim for claim in held}
        drain = next((r for r in requests if r.drain), None)
        self._set_drain(drain)
        now = self._clock()
        seen = set()
        for request in requests:
            if request.drain:
                continue
            seen.add(request.flow_id)
            self._act(request, claims.get(request.flow_id or ""), now)
        with self._lock:
            self._unheld_since = {f: t for f, t in self._unheld_since.items() if f in seen}
        if self._drain is not None:
            for claim in held:
                claim.gate.stop(f"replica drained by {self._drain.by}", handover=True)

    def _set_drain(self, drain: Handover | None) -> None:
        if drain is not None and drain.started_at != self.started_at:
            log.info("clearing a drain request for an earlier incarnation of replica %s", self.replica_id,
                     extra={"replica_id": self.replica_id, "event": "drain"})
            self.backend.clear_handover(self.replica_id, None)
            drain = None
        if (drain is None) != (self._drain is None):
            if drain is not None:
                log.warning("replica %s drained by %s: handing every flow back, claiming nothing more",
                            self.replica_id, drain.by, extra={"replica_id": self.replica_id, "event": "drain"})
            else:
                log.warning("replica %s: drain lifted, claiming again", self.replica_id,
                            extra={"replica_id": self.replica_id, "event": "drain"})
        changed = (drain.at if drain else None) != (self._drain.at if self._drain else None)
        self._drain = drain  # before it is announced: once it is, the claim loop claims nothing more
        if changed:
            self.on_drain(drain)

    def _act(self, request: Handover, claim: Claim[LeasedGate] | None, now: float) -> None:
        flow_id = request.flow_id or ""
        if claim is not None and claim.epoch == request.epoch:
            with self._lock:
                first = flow_id not in self._asked
                self._asked[flow_id] = request
                self._unheld_since.pop(flow_id, None)
            if first:
                log.warning("flow %s: %s asked for it back; handing it back after the running tasks end",
                            flow_id, request.by, extra={"flow_id": flow_id, "replica_id": self.replica_id,
                                                        "epoch": claim.epoch, "event": "handover"})
            claim.gate.stop(f"handover requested by {request.by}", handover=True)
            return
        with self._lock:
            since = self._unheld_since.setdefault(flow_id, now)
        if (claim is not None and claim.epoch > request.epoch) or now - since > self.lease:
            self._clear(flow_id)

    def handed_back(self, flow_id: str) -> Handover | None:
        """Called once the flow's claim is released: the request it was
        handed back for (cleared from the mailbox), or None."""
        with self._lock:
            request = self._asked.pop(flow_id, None)
        if request is not None:
            self._clear(flow_id)
        return request

    def _clear(self, flow_id: str) -> None:
        with self._lock:
            self._unheld_since.pop(flow_id, None)
        try:
            self.backend.clear_handover(self.replica_id, flow_id)
        except FlowbatonError as err:  # the next beat finds it moot and tries again
            log.warning("could not clear the handover request of flow %s: %s", flow_id, err,
                        extra={"flow_id": flow_id, "replica_id": self.replica_id})
