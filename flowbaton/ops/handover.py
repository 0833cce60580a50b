"""Asking owners to hand flows back: ``release`` without force, and ``drain``.

Forcing a claim free (``actions.release``) fences the owner at once, but a
task it is running keeps running while another replica starts the flow
again: the in-flight task runs twice. A handover request instead asks the
owner (``coordinator.handover``) to let its running tasks finish and record
their results, then release: the owner sees the request within a lease
interval, nothing runs twice, and the flow moves to another replica.

A request goes to a *live* owner only: a claim held by no live replica (a
dead process whose lease has not run out, an interrupted operator command)
has nobody to hand it back, and is refused with the way out (wait for the
lease, or force).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend
from ..backends.records import ClaimInfo, Handover, ReplicaInfo
from ..coordinator.waiting import Polls
from .actions import OpRefused, current_claim, load_flow, operator_id

__all__ = ["HandoverResult", "request_release", "drain", "undrain", "wait_handed_back", "wait_drained"]


@dataclass(frozen=True)
class HandoverResult:
    """What a handover request asked: of whom (``replica_id``), about which
    flow (None: a drain), the claim it is about (``epoch``), and the request
    filed (None when there was nothing to ask: an unclaimed flow, a drain
    lifted that was not set)."""

    action: str  # "release", "drain" or "undrain"
    replica_id: str | None
    flow_id: str | None
    epoch: int | None
    request: Handover | None
    held: list[str]  # drain: the flows the replica held when asked

    def describe(self) -> str:
        """The one line the CLI prints for people: whom it asked to hand what
        back and when they will see it, or why there was nothing to ask."""
        if self.action == "release":
            if self.request is None:
                return f"flow {self.flow_id} is not claimed: nothing to hand back; any replica may run it"
            return (f"asked {self.replica_id} to hand flow {self.flow_id} back (claim epoch {self.epoch}) "
                    "once its running tasks end; it sees the request within a lease interval")
        if self.action == "drain":
            return (f"asked replica {self.replica_id} to hand back its {len(self.held)} flow(s) once their "
                    "running tasks end and to claim nothing more (`flowbaton drain --undo` lifts it)")
        if self.request is None:
            return f"replica {self.replica_id} was not drained"
        return f"lifted the drain of replica {self.replica_id}: it claims flows again"

    def to_json(self) -> dict[str, Any]:
        """What ``release --json`` (without ``--force``) and ``drain --json``
        (``--undo`` too) print: action, replica_id, flow_id, epoch,
        ``requested`` (whether a request was filed or found), ``requested_by``
        and ``held``; keys in this order, later releases only append keys."""
        return {"action": self.action, "replica_id": self.replica_id, "flow_id": self.flow_id,
                "epoch": self.epoch, "requested": self.request is not None,
                "requested_by": self.request.by if self.request else None, "held": self.held}


def _live(backend: Backend, replica_id: str) -> ReplicaInfo | None:
    return next((r for r in backend.list_replicas() if r.replica_id == replica_id), None)


def request_release(backend: Backend, flow_id: str, *, who: str | None = None) -> HandoverResult:
    """Ask the flow's owner to hand it back at its next task boundary.
    ``OpRefused`` when the owner is no live replica (nobody would act)."""
    load_flow(backend, flow_id)  # FlowNotFound, or the way to remove a corrupt one
    claim = current_claim(backend, flow_id)
    if claim is None:
        return HandoverResult("release", None, flow_id, None, None, [])
    owner = _live(backend, claim.owner)
    if owner is None:
        raise OpRefused(
            f"flow {flow_id} is claimed by {claim.owner}, which is no live replica (a dead process whose "
            "lease has not run out, or an interrupted operator command): nobody will hand it back. Its "
            "lease ends the claim by itself; `release --force` frees it now (if that owner is only paused, "
            "the task it was running may run twice)")
    request = Handover(claim.owner, flow_id, claim.epoch, owner.started_at, who or operator_id(), time.time())
    backend.request_handover(request)
    return HandoverResult("release", claim.owner, flow_id, claim.epoch, request, [])


def drain(backend: Backend, replica_id: str, *, who: str | None = None) -> HandoverResult:
    """Ask a live replica to hand back every flow and claim nothing more."""
    replica = _live(backend, replica_id)
    if replica is None:
        raise OpRefused(f"no live replica {replica_id!r}: `flowbaton replicas` lists them")
    request = Handover(replica_id, None, 0, replica.started_at, who or operator_id(), time.time())
    backend.request_handover(request)
    held = sorted(c.flow_id for c in backend.list_claims() if c.owner == replica_id)
    return HandoverResult("drain", replica_id, None, None, request, held)


def undrain(backend: Backend, replica_id: str) -> HandoverResult:
    """Lift a drain: the replica claims flows again at its next beat."""
    found = next((r for r in backend.load_handovers(replica_id) if r.drain), None)
    backend.clear_handover(replica_id, None)
    return HandoverResult("undrain", replica_id, None, None, found, [])


def _still_held(backend: Backend, flow_id: str, epoch: int) -> ClaimInfo | None:
    claim = current_claim(backend, flow_id)
    return claim if claim is not None and claim.epoch == epoch else None


def _wait(done: Callable[[], bool], what: str, timeout: float | None, sleep: Callable[[float], None]) -> None:
    polls = Polls(what, timeout, time.monotonic)
    while not done():
        try:
            sleep(polls.pause("held"))
        except TimeoutError:
            raise TimeoutError(f"{what} not handed back after {timeout}s") from None


def wait_handed_back(backend: Backend, result: HandoverResult, timeout: float | None = 300.0,
                     sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once the claim the request was about is gone; ``TimeoutError``."""
    if result.flow_id is None or result.epoch is None:
        return
    flow_id, epoch = result.flow_id, result.epoch
    _wait(lambda: _still_held(backend, flow_id, epoch) is None, f"flow {flow_id}", timeout, sleep)


def wait_drained(backend: Backend, result: HandoverResult, timeout: float | None = 300.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
    """Return once the replica ``result`` drained has read the request (its
    presence says it obeys it: ``ReplicaInfo.draining_since``, so it claims
    nothing more) and holds no claim; ``TimeoutError``. Holding nothing is
    not enough alone: a replica that had no flow when asked could claim one
    before its next beat reads the request. ``OpRefused`` when the replica
    was restarted meanwhile (the drain was about its earlier run) or was not
    drained by ``result``."""
    request = result.request
    if result.action != "drain" or request is None or result.replica_id is None:
        raise OpRefused("nothing to wait for: not a drain request")
    replica_id = result.replica_id

    def drained() -> bool:
        live = _live(backend, replica_id)
        if live is not None and live.started_at != request.started_at:
            raise OpRefused(f"replica {replica_id} was restarted: the drain was about its earlier run "
                            "(drain it again)")
        if live is not None and live.draining_since != request.at:
            return False  # not read yet: it may still claim
        return not any(c.owner == replica_id for c in backend.list_claims())

    _wait(drained, f"replica {replica_id}", timeout, sleep)
