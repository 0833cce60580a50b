"""flowbaton flows the benchmarks run (factories, so replicas rebuild them by name).

``steps`` notes every task's start and end in a ledger file (see
``bench/peers/common.py``): the failover and zombie workloads read who ran
what, and when, from it. The TaskFlow side runs the same shapes
(``bench/peers/taskflow_flows.py``).
"""

from __future__ import annotations

import time

from flowbaton import Flow, Linear, Task

from .peers.common import note

__all__ = ["noop_linear", "steps", "hold"]


class NoOp(Task):
    def execute(self) -> None:
        return None


class Step(Task):
    def __init__(self, n: int, delay: float, ledger: str) -> None:
        super().__init__(id=f"step-{n:02d}")
        self.delay = delay
        self.ledger = ledger

    def execute(self) -> None:
        note(self.ledger, "start", self.task_id)
        time.sleep(self.delay)
        note(self.ledger, "end", self.task_id)


class Hold(Task):
    """Keeps its flow claimed for a while (board-scale probes)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(id="hold")
        self.seconds = seconds

    def execute(self) -> None:
        time.sleep(self.seconds)


def noop_linear(count: int) -> Flow:
    return Linear("noop", *[NoOp(id=f"noop-{n}") for n in range(count)])


def steps(count: int, delay: float, ledger: str) -> Flow:
    return Linear("steps", *[Step(n, delay, ledger) for n in range(count)])


def hold(seconds: float) -> Flow:
    return Linear("hold", Hold(seconds))
