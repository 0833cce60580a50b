"""The example service's flows: what the image, compose and the README run.

``provision`` stands for any multi-step operation: reserve an address, do a
number of slow configuration steps, mark the machine ready. Each step takes
``pause`` seconds, long enough to kill the replica running it and watch
another one take over (``flowbaton claims``). Every step logs its
idempotency key: the same across owners and attempts, which is what a real
side effect (an API call, a payment) would de-duplicate on.

Replicas run it with ``--allow example_service.`` (or
``FLOWBATON_ALLOW=example_service.``) and the module on the import path.
"""

from __future__ import annotations

import asyncio
import logging
import time

from flowbaton import Flow, Linear, current_task, task

log = logging.getLogger("example_service")


@task(id="reserve-address", provides="address")
def reserve_address(name: str) -> str:
    key = current_task().idempotency_key
    log.info("reserving an address for %s (idempotency key %s)", name, key)
    return f"10.0.0.{sum(name.encode()) % 250 + 2}"


@reserve_address.revert
def release_address(address: str, name: str) -> None:
    log.info("releasing %s of %s", address, name)


@task(id="configure")
def configure(name: str, address: str, pause: float = 1.0) -> None:
    ctx = current_task()
    log.info("%s: %s on %s, attempt %d%s", name, ctx.task_id, address, ctx.attempt,
             " (in doubt: re-run after a takeover)" if ctx.in_doubt else "")
    time.sleep(pause)


@task(id="mark-ready")
def mark_ready(name: str, address: str) -> dict[str, str]:
    return {"name": name, "address": address, "state": "ready"}


def provision(name: str, steps: int = 10, pause: float = 1.0) -> Flow:
    """The factory, saved as ``example_service.flows:provision``: reserve,
    ``steps`` configuration steps of ``pause`` seconds, mark ready."""
    work = [configure.clone(id=f"configure-{i}") for i in range(steps)]
    return Linear("provision", reserve_address, *work, mark_ready)


@task(id="configure-async")
async def configure_async(name: str, address: str, pause: float = 1.0) -> None:
    """``configure`` as a coroutine: an asyncio service's step awaits its I/O."""
    ctx = current_task()
    log.info("%s: %s on %s, attempt %d%s", name, ctx.task_id, address, ctx.attempt,
             " (in doubt: re-run after a takeover)" if ctx.in_doubt else "")
    await asyncio.sleep(pause)


def provision_async(name: str, steps: int = 10, pause: float = 1.0) -> Flow:
    """``provision`` with ``async def`` steps, beside the plain first and
    last tasks: what the FastAPI example (``api.py``) submits."""
    work = [configure_async.clone(id=f"configure-{i}") for i in range(steps)]
    return Linear("provision", reserve_address, *work, mark_ready)
