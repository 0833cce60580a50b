"""TaskFlow flows the benchmarks run: the same shapes as ``bench/flows.py``.

Conductors rebuild a job's flow by importing a factory by name, so these
live in a module of their own (``taskflow_flows``, importable because the
driver scripts run from this folder).
"""

from __future__ import annotations

import time
from typing import Any

from common import note
from taskflow import task
from taskflow.patterns import linear_flow


class NoOp(task.Task):
    def execute(self) -> None:
        return None


class Step(task.Task):
    """Notes its start and end in the ledger around a short sleep."""

    def __init__(self, name: str, delay: float, ledger: str) -> None:
        super().__init__(name=name)
        self.delay = delay
        self.ledger = ledger

    def execute(self) -> None:
        note(self.ledger, "start", self.name)
        time.sleep(self.delay)
        note(self.ledger, "end", self.name)


def noop_linear(count: int) -> Any:
    return linear_flow.Flow("noop").add(*[NoOp(name=f"noop-{n}") for n in range(count)])


def steps(count: int, delay: float, ledger: str) -> Any:
    return linear_flow.Flow("steps").add(*[Step(f"step-{n:02d}", delay, ledger) for n in range(count)])


class Hold(task.Task):
    """Keeps its job claimed for a while (board-scale probes)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(name="hold")
        self.seconds = seconds

    def execute(self) -> None:
        time.sleep(self.seconds)


def hold(seconds: float) -> Any:
    return linear_flow.Flow("hold").add(Hold(seconds))
