"""TaskFlow flows of the fleet workload: the same shape as
``bench/fleet_flows.py`` (tasks named ``TAG/hold-N`` that note their start
and end in the ledger). A module of its own: conductors import a job's
factory by name, and the driver script runs as ``__main__``.
"""

from __future__ import annotations

import time
from typing import Any

from common import note
from taskflow import task
from taskflow.patterns import linear_flow


class Hold(task.Task):
    def __init__(self, name: str, seconds: float, ledger: str) -> None:
        super().__init__(name=name)
        self.seconds = seconds
        self.ledger = ledger

    def execute(self) -> None:
        note(self.ledger, "start", self.name)
        time.sleep(self.seconds)
        note(self.ledger, "end", self.name)


def holds(tag: str, count: int, seconds: float, ledger: str) -> Any:
    return linear_flow.Flow("holds").add(*[Hold(f"{tag}/hold-{n}", seconds, ledger) for n in range(count)])
