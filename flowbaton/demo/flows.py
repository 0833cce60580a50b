"""The flow ``flowbaton demo`` runs: eight visible steps of a pretend VM
provisioning, each taking a moment, each saying who ran it and which attempt.

It ships with the package so that ``flowbaton demo`` works right after install.
"""

from __future__ import annotations

import os
import time

from ..engine import Flow, Linear, Task, current_task, task

__all__ = ["STEPS", "provision"]

STEPS = (
    "create network",
    "reserve IP address",
    "create volume",
    "boot VM",
    "attach volume",
    "configure DNS",
    "run health check",
    "announce service",
)


def _step(ledger: str, pause: float = 0.6) -> str:
    ctx = current_task()
    number = int(ctx.task_id.split("-")[1])
    note = "  (in doubt: its first owner died during it, so it runs again)" if ctx.in_doubt else ""
    print(f"    [{ctx.replica_id}] step {number}/{len(STEPS)}: {STEPS[number - 1]} "
          f"(attempt {ctx.attempt}){note}", flush=True)
    _record(ledger, f"{ctx.task_id} {ctx.attempt} {ctx.replica_id}")
    time.sleep(pause)
    return f"{STEPS[number - 1]}: done by {ctx.replica_id}"


# Not ``@task``: the decorator is untyped, and this module is type-checked.
step: Task = task(_step, id="step")


def _record(ledger: str, line: str) -> None:
    """The demo's proof: one line per execution, appended atomically."""
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def provision() -> Flow:
    return Linear("provision demo VM", *[step.clone(id=f"step-{i}") for i in range(1, len(STEPS) + 1)])
