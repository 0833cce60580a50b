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
import sys
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
        if cancel:  # after its first step, so the coroutine sees it (and settles) even before 3.12
            task.get_loop().call_soon(task.cancel)


def start_call(make: Callable[[], Awaitable[Any]], ctx: TaskContext | None, name: str) -> AsyncCall:
    """Run ``await make()`` on the task loop with ``ctx`` as its
    ``current_task()`` (a context variable: it follows the coroutine across
    its awaits and never leaks into another task).

    The call costs one wake-up of the loop: the coroutine settles the future
    itself as it ends (no done-callback turn of the loop), and on Python
    3.12+ its first step runs eagerly in that same turn, so a call that
    never suspends is over before the loop looks at its queue again.
    """
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    call = AsyncCall(future)
    loop = event_loop()
    loop.call_soon_threadsafe(_begin, loop, call, make, ctx, name)
    return call


def _begin(loop: asyncio.AbstractEventLoop, call: AsyncCall, make: Callable[[], Awaitable[Any]],
           ctx: TaskContext | None, name: str) -> None:
    if call._cancel:  # cancelled before it started: it never runs
        call.future.set_exception(TaskCancelled(f"async task call {name} was cancelled"))
        return
    coro = _settling(make, ctx, call.future, name)
    task = asyncio.Task(coro, loop=loop, name=name, **_EAGER)
    if not task.done():
        call._begin(task)


#: Python 3.12+ can run a task's first step inside ``create_task``.
_EAGER: dict[str, Any] = {"eager_start": True} if sys.version_info >= (3, 12) else {}


async def _settling(make: Callable[[], Awaitable[Any]], ctx: TaskContext | None,
                    future: Future[Any], name: str) -> None:
    """Await the call and hand its outcome to ``future``: once the
    coroutine has ended, ``finally`` blocks and ``async with`` exits
    included, since they run inside ``make()``."""
    try:
        with task_context(ctx):
            result = await make()
    except asyncio.CancelledError:
        future.set_exception(TaskCancelled(f"async task call {name} was cancelled"))
        raise
    except BaseException as error:  # the future carries it to the runner, as a thread's call would
        future.set_exception(error)
        if not isinstance(error, Exception):
            raise
    else:
        future.set_result(result)
