"""A rollback on purpose, for every flow it strands at once.

After a rollback, flows that newer code already ran wait for a replica of
that code (``ops.stranded``: stranded for their build). ``allow_stranded``
lets older code take each of them (``actions.retry`` with ``allow_build``,
one fenced write per flow, each with its operations note), and skips, with
the reason, every flow it may not allow: one claimed meanwhile (claimed
without force, so a replica that took it is never fenced), one that
finished, one whose build is older than the allowance already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Backend
from ..backends.errors import ClaimHeld, FlowNotFound
from ..backends.states import RUNNABLE_FLOW_STATES
from ..engine.builds import checked_build
from .actions import ActionResult, OpRefused, operator_id, retry
from .stranded import stranded_by_build

__all__ = ["RollbackReport", "build_stranded_flows", "allow_stranded"]


@dataclass
class RollbackReport:
    """Flows allowed the build (each action's result) and flows skipped (id, why)."""

    build: str
    allowed: list[ActionResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """What ``retry --stranded --allow-build --json`` prints: the build,
        ``allowed`` (each flow's retry result as ``retry --json`` prints it)
        and ``skipped`` (id and why); keys in this order, later releases only
        append keys."""
        return {"build": self.build, "allowed": [r.to_json() for r in self.allowed],
                "skipped": [{"id": flow_id, "why": why} for flow_id, why in self.skipped]}


def build_stranded_flows(backend: Backend) -> dict[str, str]:
    """Flow id -> reason, for the runnable flows no live replica's build may run."""
    claimed = {c.flow_id for c in backend.list_claims()}
    replicas = backend.list_replicas()
    found: dict[str, str] = {}
    for flow in backend.list_flows(sorted(RUNNABLE_FLOW_STATES)):
        reason = stranded_by_build(flow, flow.id in claimed, replicas)
        if reason is not None:
            found[flow.id] = reason
    return found


def allow_stranded(backend: Backend, build: str, *, who: str | None = None) -> RollbackReport:
    """``retry --allow-build build`` on every flow stranded for its build."""
    try:
        checked_build(build, "--allow-build")
    except ValueError as err:
        raise OpRefused(str(err)) from None
    who = who or operator_id()
    report = RollbackReport(build)
    for flow_id in build_stranded_flows(backend):
        try:
            report.allowed.append(retry(backend, flow_id, who=who, allow_build=build, force=False))
        except ClaimHeld:
            report.skipped.append((flow_id, "claimed meanwhile: a replica runs it"))
        except FlowNotFound:
            report.skipped.append((flow_id, "deleted meanwhile"))
        except OpRefused as err:
            report.skipped.append((flow_id, str(err)))
    return report
