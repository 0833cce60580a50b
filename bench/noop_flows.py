"""No-op flows for benchmarks: the cost measured is flowbaton's, not the tasks'."""

from __future__ import annotations

from flowbaton.engine import Flow, Linear, Task


class NoOp(Task):
    def execute(self) -> None:
        return None


def linear(count: int) -> Flow:
    return Linear("noop", *[NoOp(id=f"noop-{n}") for n in range(count)])
