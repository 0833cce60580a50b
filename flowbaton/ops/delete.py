"""``flowbaton delete FLOW_ID --force``: remove one flow, whatever its state
or the state of its records.

For the flow no other command can repair (its record is unreadable, or it
must go now). Fenced like every action: a forced claim first (an unreadable
claim is replaced, see ``ops.current_claim``), so a live owner's next write
fails; then the backend's fenced ``delete_flow`` removes the record, tasks,
declines and claim at once. ``describe_delete`` reads what would go and
changes nothing (``--dry-run``, the confirmation question).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend
from ..backends.errors import CorruptRecord
from ..backends.records import ClaimInfo
from .actions import ActionResult, claimed, current_claim, operator_id

__all__ = ["DeletePlan", "describe_delete", "delete"]

UNREADABLE = "unreadable"


@dataclass(frozen=True)
class DeletePlan:
    """What deleting the flow removes, as read now."""

    flow_id: str
    state: str  # the flow's state, or "unreadable"
    tasks: int | None  # stored task details; None when they cannot be read
    claim: ClaimInfo | None

    def describe(self) -> str:
        tasks = "unreadable task details" if self.tasks is None else f"{self.tasks} task detail(s)"
        owner = (f"claimed by {self.claim.owner} at epoch {self.claim.epoch}, who will be fenced"
                 if self.claim else "no live claim")
        return f"flow {self.flow_id} ({self.state}) with {tasks}, its declines and claim ({owner})"

    def to_json(self) -> dict[str, Any]:
        return {"flow_id": self.flow_id, "state": self.state, "tasks": self.tasks,
                "claim": self.claim.to_dict() if self.claim else None}


def describe_delete(backend: Backend, flow_id: str) -> DeletePlan:
    """Read what ``delete`` would remove. ``FlowNotFound`` if nothing is stored."""
    state = _state(backend, flow_id)
    try:
        tasks: int | None = len(backend.load_tasks(flow_id))
    except CorruptRecord:
        tasks = None
    return DeletePlan(flow_id, state, tasks, current_claim(backend, flow_id))


def delete(backend: Backend, flow_id: str, *, who: str | None = None) -> ActionResult:
    """Remove the flow with its tasks, declines and claim, fenced: the
    previous holder (if any) loses its claim first and cannot write again."""
    who = who or operator_id()
    with claimed(backend, flow_id, who, release_after=False) as (token, held):  # delete_flow ends the claim
        before = _state(backend, flow_id)
        backend.delete_flow(token)
    return ActionResult("delete", flow_id, before, "DELETED", token.epoch, held)


def _state(backend: Backend, flow_id: str) -> str:
    """The flow's state, or "unreadable"; ``FlowNotFound`` if nothing is stored."""
    try:
        return backend.load_flow(flow_id).state
    except CorruptRecord:
        return UNREADABLE
