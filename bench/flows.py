"""flowbaton flows the benchmarks run (factories, so replicas rebuild them by name).

``steps`` notes every task's start and end in a ledger file (see
``bench/peers/common.py``): the failover and zombie workloads read who ran
what, and when, from it. The TaskFlow side runs the same shapes
(``bench/peers/taskflow_flows.py``).
"""

from __future__ import annotations

import asyncio
import threading
import time

from flowbaton import Flow, Linear, Task, current_task

from .peers.common import note

__all__ = ["noop_linear", "noop_retried", "noop_linear_async", "steps", "hold", "sleeper", "STARTED"]

#: tasks ``sleeper`` started in this process (the async benchmark counts them)
STARTED = [0]
_STARTED_LOCK = threading.Lock()


def _started() -> None:
    with _STARTED_LOCK:
        STARTED[0] += 1


class NoOp(Task):
    def execute(self) -> None:
        return None


class AsyncNoOp(Task):
    async def execute(self) -> None:
        return None


class Sleep(Task):
    """One task that sleeps (``time.sleep``) or awaits (``asyncio.sleep``)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(id="sleep")
        self.seconds = seconds

    def execute(self) -> None:
        _started()
        time.sleep(self.seconds)


class AsyncSleep(Sleep):
    async def execute(self) -> None:  # type: ignore[override]
        _started()
        await asyncio.sleep(self.seconds)


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


class FailsOnce(Task):
    """A no-op whose first attempt raises: the history benchmark's retry."""

    def execute(self) -> None:
        if current_task().attempt == 1:
            raise ConnectionError("first attempt fails on purpose")


def noop_retried(count: int) -> Flow:
    """``count`` no-ops that each run twice (a retry per task)."""
    from tenacity import stop_after_attempt

    return Linear("noop-retried", *[FailsOnce(id=f"noop-{n}", retry=stop_after_attempt(2))
                                    for n in range(count)])


def noop_linear_async(count: int) -> Flow:
    return Linear("noop-async", *[AsyncNoOp(id=f"noop-{n}") for n in range(count)])


def sleeper(seconds: float, kind: str = "sync") -> Flow:
    """One task of ``seconds``: ``kind`` "async" awaits, "sync" sleeps a thread."""
    return Linear("sleeper", (AsyncSleep if kind == "async" else Sleep)(seconds))


def steps(count: int, delay: float, ledger: str) -> Flow:
    return Linear("steps", *[Step(n, delay, ledger) for n in range(count)])


def hold(seconds: float) -> Flow:
    return Linear("hold", Hold(seconds))
