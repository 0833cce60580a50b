"""One action on every flow a filter selects: ``cancel``/``retry``/``release`` in bulk.

The selection is a listing (``query.flows``, the same filters), read once;
each flow is then acted on by itself, exactly as the single action would,
so a flow that changed since the listing is refused by the action's own
checks and reported as skipped while the others go on. A dry run lists the
selection and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends.errors import ClaimHeld, FlowNotFound
from .actions import ActionResult, OpRefused
from .documents import FlowRow
from .handover import HandoverResult

__all__ = ["BulkReport", "apply"]

Result = ActionResult | HandoverResult


@dataclass
class BulkReport:
    """What a bulk action selected, did (one result per flow) and skipped (id, why)."""

    action: str
    dry_run: bool
    selected: list[FlowRow]
    done: list[Result] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        """For people: one line per flow, then the count."""
        if self.dry_run:
            lines = [f"would {self.action} {r.id} ({r.state}, factory {r.factory})" for r in self.selected]
            return [*lines, f"would {self.action} {len(self.selected)} flow(s); nothing was changed"]
        lines = [result.describe() for result in self.done]
        lines += [f"skipped {flow_id}: {why}" for flow_id, why in self.skipped]
        skipped = f"; skipped {len(self.skipped)}" if self.skipped else ""
        return [*lines, f"{self.action}: {len(self.done)} of {len(self.selected)} flow(s){skipped}"]

    def to_json(self) -> dict[str, Any]:
        """What a bulk ``cancel``, ``retry`` or ``release`` prints with
        ``--json``: action, dry_run, the ``selected`` flow ids, ``done`` (each
        flow's own result as the single action prints it) and ``skipped`` (id
        and why); keys in this order, later releases only append keys."""
        return {"action": self.action, "dry_run": self.dry_run, "selected": [r.id for r in self.selected],
                "done": [r.to_json() for r in self.done],
                "skipped": [{"id": flow_id, "why": why} for flow_id, why in self.skipped]}


def apply(action: str, selected: Sequence[FlowRow], act: Callable[[str], Result], *,
          dry_run: bool = False) -> BulkReport:
    """``act(flow_id)`` on each selected flow, oldest first (unless ``dry_run``)."""
    report = BulkReport(action, dry_run, list(selected))
    if dry_run:
        return report
    for row in selected:
        try:
            report.done.append(act(row.id))
        except (OpRefused, ClaimHeld) as err:
            report.skipped.append((row.id, str(err)))
        except FlowNotFound:
            report.skipped.append((row.id, "deleted meanwhile"))
    return report
