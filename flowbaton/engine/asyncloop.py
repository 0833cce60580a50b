"""Where ``async def`` tasks run: one event loop per process, on its own thread.

A task whose execute (or revert) is a coroutine function is called on this
loop instead of on a thread of its own. The runner sees the same thing for
both kinds of call, a ``concurrent.futures.Future``, so retries, timeouts,
slots and results work alike; what an async call adds is that it can be
stopped: ``AsyncCall.cancel`` cancels the asyncio task (``CancelledError``
at its next ``await``), and the future ends only once the coroutine has
really ended (its ``finally`` blocks and ``async with`` exits have run), so
a retry never overlaps the attempt it replaces.

Why a loop of our own rather than the caller's: the runner is threaded
(a flow's loop blocks while it waits), so a coroutine must run on a loop
that no flow's thread blocks. One loop on a daemon thread, started on first
use, serves every flow of the process; a task that blocks that loop with a
sync call holds up every async task of the process, as it would in any
asyncio service.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

from .context import TaskContext, task_context

__all__ = ["AsyncCall", "TaskCancelled", "start_call", "event_loop"]


class TaskCancelled(Exception):
    """An async task call was cancelled (claim lost, timeout, stop): the
    outcome of its future. An ``Exception``, not asyncio's
    ``CancelledError`` (a ``BaseException``), so waiters treat it like any
    failed call."""


_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def event_loop() -> asyncio.AbstractEventLoop:
    """The process's task loop, started on first use."""
    global _loop
    with _lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            threading.Thread(target=_serve, args=(loop, ready), name="flowbaton-async-tasks", daemon=True).start()
            ready.wait()
            _loop = loop
        return _loop


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


class AsyncCall:
    """One async task call in flight: its future, and a way to stop it."""

    def __init__(self, future: Future[Any]) -> None:
        self.future = future
        self._task: asyncio.Task[Any] | None = None
        self._cancel = False
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Cancel the call (from any thread); its future ends with
        ``TaskCancelled`` once the coroutine has finished unwinding."""
        with self._lock:
            self._cancel = True
            task = self._task
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)

    def _begin(self, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._task = task
            cancel = self._cancel
        if cancel:
            task.cancel()


def start_call(make: Callable[[], Awaitable[Any]], ctx: TaskContext | None, name: str) -> AsyncCall:
    """Run ``await make()`` on the task loop with ``ctx`` as its
    ``current_task()`` (a context variable: it follows the coroutine across
    its awaits and never leaks into another task)."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    call = AsyncCall(future)
    loop = event_loop()

    def begin() -> None:
        task = loop.create_task(_in_context(make, ctx), name=name)
        task.add_done_callback(lambda done: _settle(future, done))
        call._begin(task)

    loop.call_soon_threadsafe(begin)
    return call


async def _in_context(make: Callable[[], Awaitable[Any]], ctx: TaskContext | None) -> Any:
    with task_context(ctx):
        return await make()


def _settle(future: Future[Any], task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        future.set_exception(TaskCancelled(f"async task call {task.get_name()} was cancelled"))
        return
    error = task.exception()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(task.result())
