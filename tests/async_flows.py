"""Factories with ``async def`` tasks for the engine's async tests.

The tests run flows in this process (every backend, real servers), so the
tasks report to module-level probes the tests read and reset."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from flowbaton.engine import Flow, Linear, Task, current_task, task


class Probe:
    """What the async tasks did, for the test that runs them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str, int]] = []  # (what, task id, attempt)
        self.started = threading.Event()
        self.release = threading.Event()

    def note(self, what: str) -> None:
        ctx = current_task()
        with self.lock:
            self.events.append((what, ctx.task_id, ctx.attempt))

    def seen(self, what: str) -> list[tuple[str, int]]:
        with self.lock:
            return [(tid, attempt) for w, tid, attempt in self.events if w == what]


PROBE = Probe()


def reset() -> None:
    global PROBE
    PROBE = Probe()


@task(id="sync-first", provides="seed")
def sync_first(start: int) -> int:
    PROBE.note("execute")
    return start + 1


@task(id="async-double", provides="doubled")
async def async_double(seed: int) -> int:
    PROBE.note("execute")
    await asyncio.sleep(0.01)
    # current_task() follows the coroutine across awaits (a context variable)
    assert current_task().task_id == "async-double"
    return seed * 2


@async_double.revert
async def undo_double(doubled: int) -> None:
    await asyncio.sleep(0)
    PROBE.note("revert")


class AsyncLabel(Task):
    id = "async-label"
    provides = "label"

    async def execute(self, doubled: int) -> str:
        await asyncio.sleep(0)
        PROBE.note("execute")
        return f"v{doubled}"

    async def revert(self, result: Any, doubled: int) -> None:
        PROBE.note("revert")


@task(id="explode")
def explode(label: str) -> None:
    raise RuntimeError(f"no room for {label}")


def mixed(start: int) -> Flow:
    return Linear("mixed", sync_first, async_double, AsyncLabel())


def mixed_then_fail(start: int) -> Flow:
    return Linear("mixed-fail", sync_first, async_double, AsyncLabel(), explode)


@task(id="waits", provides="waited")
async def waits(seconds: float) -> str:
    """Waits ``seconds`` unless this is a retry; notes a cancellation."""
    PROBE.note("execute")
    PROBE.started.set()
    try:
        if current_task().attempt == 1:
            await asyncio.sleep(seconds)
        return f"attempt {current_task().attempt}"
    except asyncio.CancelledError:
        PROBE.note("cancelled")
        raise
    finally:
        PROBE.note("unwound")


def waiting(seconds: float) -> Flow:
    return Linear("waiting", waits)


def waiting_with_timeout(seconds: float, timeout: float) -> Flow:
    from tenacity import stop_after_attempt

    return Linear("waiting-timeout", waits.clone(timeout=timeout, retry=stop_after_attempt(2)))
