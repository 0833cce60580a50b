"""What a caller gets back about a flow: its record, its tasks, decoded results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Backend
from ..backends.records import FlowDetail, TaskDetail
from ..backends.states import SUCCESS, TERMINAL_FLOW_STATES
from .codec import decode
from .meta import FlowMeta

__all__ = ["FlowReport", "load_report"]


@dataclass
class FlowReport:
    """A flow as stored: ``results`` maps task id to the decoded result of
    every task that succeeded; ``unmatched`` lists stored task ids that the
    flow, as last rebuilt, no longer has."""

    id: str
    name: str
    state: str
    reason: str | None
    flow: FlowDetail
    tasks: dict[str, TaskDetail] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """The flow reached a terminal state (HELD is not terminal)."""
        return self.state in TERMINAL_FLOW_STATES

    @classmethod
    def of(cls, flow: FlowDetail, tasks: dict[str, TaskDetail]) -> FlowReport:
        """The report of a flow record and its task details as read from the
        store: results decoded (types with a codec registered in this
        process come back as themselves) for the tasks that succeeded."""
        results = {tid: decode(t.result) for tid, t in tasks.items() if t.state == SUCCESS}
        return cls(flow.id, flow.name, flow.state, flow.reason, flow, tasks, results, FlowMeta(flow.meta).unmatched)


def load_report(backend: Backend, flow_id: str) -> FlowReport:
    """Read a flow and its tasks (two reads) into a report."""
    flow = backend.load_flow(flow_id)
    return FlowReport.of(flow, backend.load_tasks(flow_id))
