"""flowbaton flows of the fleet workload: a few tasks that each note their
start and end in the ledger (``peers/common.py``) under ``TAG/hold-N``, so
the workload can tell every flow apart and see which replica ran it.

Long sleeps keep a flow claimed for as long as a measurement lasts (busy
replica, mass takeover); short ones let 300 flows finish (fairness). The
TaskFlow side runs the same shape (``peers/taskflow_fleet_flows.py``).
"""

from __future__ import annotations

import time

from flowbaton import Flow, Linear, Task

from .peers.common import note

__all__ = ["holds"]


class Hold(Task):
    def __init__(self, tag: str, n: int, seconds: float, ledger: str) -> None:
        super().__init__(id=f"hold-{n}")
        self.tag = tag
        self.seconds = seconds
        self.ledger = ledger

    def execute(self) -> None:
        note(self.ledger, "start", f"{self.tag}/{self.task_id}")
        time.sleep(self.seconds)
        note(self.ledger, "end", f"{self.tag}/{self.task_id}")


def holds(tag: str, count: int, seconds: float, ledger: str) -> Flow:
    return Linear("holds", *[Hold(tag, n, seconds, ledger) for n in range(count)])
