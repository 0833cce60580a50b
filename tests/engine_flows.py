"""Factories and tasks the engine tests run (importable by subprocesses)."""

from __future__ import annotations

import json
import os
import time
from typing import Any


from flowbaton.engine import Flow, Graph, Linear, Task, Unordered, task
from flowbaton.engine import current_task


def _ledger(event: str, path: str | None) -> None:
    if not path:
        return
    ctx = current_task()
    line = json.dumps({"event": event, "task": ctx.task_id, "attempt": ctx.attempt,
                       "in_doubt": ctx.in_doubt, "epoch": ctx.epoch, "pid": os.getpid()})
    with open(path, "a") as fh:
        fh.write(line + "\n")


@task(id="reserve-ip", provides="ip")
def reserve_ip(network: str, ledger: str | None = None) -> str:
    _ledger("execute", ledger)
    return f"10.0.0.{len(network)}"


@reserve_ip.revert
def release_ip(ip: str, network: str, ledger: str | None = None) -> None:
    _ledger("revert", ledger)


class BootVM(Task):
    id = "boot-vm"
    version = "2.0"
    provides = "vm"

    def execute(self, ip: str, image: str, ledger: str | None = None) -> dict[str, Any]:
        _ledger("execute", ledger)
        return {"ip": ip, "image": image}

    def revert(self, result: Any, ip: str, image: str, ledger: str | None = None) -> None:
        _ledger("revert", ledger)


def provision(network: str) -> Flow:
    return Linear("provision", reserve_ip, BootVM())


@task(id="explode")
def explode(vm: dict[str, Any], ledger: str | None = None) -> None:
    _ledger("execute", ledger)
    raise RuntimeError("boom")


def provision_then_fail(network: str) -> Flow:
    return Linear("provision", reserve_ip, BootVM(), explode)


def _step(n: int) -> Task:
    return Step(id=f"step-{n}")


class Step(Task):
    """A numbered step; with ``pause`` it sleeps, with ``crash_at`` it kills
    its own process at that step on the first attempt."""

    def execute(self, ledger: str | None = None, pause: float = 0.0, crash_at: str = "") -> str:
        ctx = current_task()
        _ledger("execute", ledger)
        if ctx.task_id == crash_at and ctx.attempt == 1:
            os.kill(os.getpid(), 9)
        if pause:
            time.sleep(pause)
        return ctx.task_id


def steps(count: int) -> Flow:
    return Linear("steps", *[_step(n) for n in range(count)])


def steps_with_insert(count: int) -> Flow:
    """``steps`` after a deploy that added step-new before step-2."""
    items = [_step(n) for n in range(count)]
    items.insert(2, Step(id="step-new"))
    return Linear("steps", *items)


def fan(width: int) -> Flow:
    return Unordered("fan", *[Step(id=f"fan-{n}") for n in range(width)])


