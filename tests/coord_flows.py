"""Factories the coordinator tests submit (importable by replica subprocesses).

Every task execution appends one line ``flow task attempt epoch replica`` to
the ledger file given as a flow input: an external record, written before
the task's own sleep, that proves which owner started what and how often.
"""

from __future__ import annotations

import asyncio
import os
import time

from flowbaton.engine import Flow, Linear, current_task, task


def record(ledger: str) -> None:
    """Append this execution to the ledger (one short O_APPEND write, so
    lines from several processes never interleave)."""
    ctx = current_task()
    line = f"{ctx.flow_id} {ctx.task_id} {ctx.attempt} {ctx.epoch} {ctx.replica_id}\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@task(id="step")
def step(ledger: str, pause: float = 0.05, hold: str = "") -> int:
    """``hold``: a file path; the step waits while that file exists (at most
    a minute), so a test can look at a running flow for as long as it needs."""
    record(ledger)
    deadline = time.monotonic() + 60.0
    while hold and os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(pause)
    return current_task().attempt


def steps(n: int = 3) -> Flow:
    """``n`` steps in a row, ids ``s0`` .. ``s{n-1}``."""
    return Linear("steps", *[step.clone(id=f"s{i}") for i in range(n)])


@task(id="astep")
async def async_step(ledger: str, pause: float = 0.05, hold: str = "") -> int:
    """``step`` as a coroutine (the ledger line is the same)."""
    record(ledger)
    deadline = time.monotonic() + 60.0
    while hold and os.path.exists(hold) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(pause)
    return current_task().attempt


def mixed_steps(n: int = 3) -> Flow:
    """``steps`` with every odd step ``async def``: a sync/async mix."""
    return Linear("mixed", *[(async_step if i % 2 else step).clone(id=f"s{i}") for i in range(n)])


@task(id="poison")
def poison_step(ledger: str) -> None:
    """Kills whatever process runs it, like a segfaulting C extension."""
    record(ledger)
    time.sleep(0.3)
    os._exit(17)


def poison() -> Flow:
    return Linear("poison", poison_step)


@task(id="broken")
def broken_step() -> None:
    raise RuntimeError("this task always fails")


def fails() -> Flow:
    return Linear("fails", broken_step)


def slow_to_build(hold: str = "") -> Flow:
    """One step, built only once the file ``hold`` is gone (at most a
    minute): a factory that takes its time, e.g. a cold import."""
    deadline = time.monotonic() + 60.0
    while hold and os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.02)
    return Linear("slow", step.clone(id="s0"))
