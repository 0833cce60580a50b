"""Figures: both sides' values of one measurement, paired run by run.

Pair ``i`` is flowbaton's ``i``-th value and TaskFlow's ``i``-th, measured
back to back (A B A B ...). A figure reports each side's median and the
median of the per-pair ratios flowbaton / TaskFlow. A value may be None:
the run did not get there (a takeover that never happened within its
cap); medians skip it, and a side with no value at all shows "never".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Figure", "Target", "median"]

Value = float | None


def median(values: list[Value]) -> float | None:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(known) if known else None


@dataclass(frozen=True)
class Target:
    """A goal from the issue: ``kind`` is "ratio>=" (median pair ratio),
    "fb<=" (flowbaton's median) or "fb==" (flowbaton's value in every pair:
    a safety property holds always or not at all, so no median hides a
    single failure)."""

    kind: str
    bound: float

    def met(self, figure: Figure) -> bool | None:
        if self.kind == "fb==":
            known = [v for v in figure.values["flowbaton"] if v is not None]
            return all(v == self.bound for v in known) if known else None
        value = figure.ratio() if self.kind == "ratio>=" else figure.median("flowbaton")
        if value is None:
            return None
        if self.kind == "ratio>=":
            return value >= self.bound
        return value <= self.bound

    def text(self) -> str:
        return {"ratio>=": f"ratio >= {self.bound:g}", "fb<=": f"flowbaton <= {self.bound:g}",
                "fb==": f"flowbaton = {self.bound:g} in every pair"}[self.kind]

    def misses(self, figure: Figure) -> str:
        """For "fb==": which pairs missed, e.g. "2 of 5 pairs: 1, 1"."""
        if self.kind != "fb==":
            return ""
        bad = [v for v in figure.values["flowbaton"] if v is not None and v != self.bound]
        if not bad:
            return ""
        return f" ({len(bad)} of {len(figure.values['flowbaton'])} pairs: {', '.join(f'{v:g}' for v in bad)})"


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    target: Target | None = None
    note: str = ""
    #: who the other side is: TaskFlow unless the workload says (DBOS); its
    #: values are kept under "taskflow" whoever it is, one shape for all
    peer: str = "TaskFlow"
    values: dict[str, list[Value]] = field(default_factory=lambda: {"flowbaton": [], "taskflow": []})
    errors: list[str] = field(default_factory=list)

    def add(self, flowbaton: Value, taskflow: Value) -> None:
        self.values["flowbaton"].append(flowbaton)
        self.values["taskflow"].append(taskflow)

    def median(self, side: str) -> float | None:
        return median(self.values[side])

    def ratios(self) -> list[Value]:
        return [_ratio(a, b) for a, b in zip(self.values["flowbaton"], self.values["taskflow"], strict=True)]

    def ratio(self) -> float | None:
        return median(self.ratios())

    def as_json(self) -> dict[str, Any]:
        met = self.target.met(self) if self.target else None
        return {
            "key": self.key, "label": self.label, "unit": self.unit, "note": self.note, "peer": self.peer,
            "flowbaton": {"values": self.values["flowbaton"], "median": self.median("flowbaton")},
            "taskflow": {"values": self.values["taskflow"], "median": self.median("taskflow")},
            "ratio": {"values": self.ratios(), "median": self.ratio()},
            "target": self.target.text() if self.target else None, "met": met, "errors": self.errors,
        }


def _ratio(a: Value, b: Value) -> Value:
    if a is None or b is None or b == 0:
        return None
    return a / b
