"""Where ``async def`` tasks run: one event loop per process.

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
that no flow's thread blocks. One loop serves every flow of the process, so
what a task binds to its loop (a client session, a lock) works in the next
task too; a task that blocks the loop with a sync call holds up every async
task of the process, as it would in any asyncio service.

Who runs the loop. A thread may run an asyncio loop only while no other
thread does, and handing a call to a loop that another thread runs costs
two thread wake-ups (about 60 us on CPython, twice a no-op task's whole
cost on SQLite). So the loop has no fixed thread; ``_TaskLoop.driving``
says who runs it:

- A runner starting a call while nobody runs the loop *borrows* it: it
  creates the task and runs a few turns of the loop itself (``_TURNS``),
  each polling I/O without waiting. A call that ends within them (no real
  I/O) costs no thread switch at all.
- Otherwise, and for whatever a borrower leaves unfinished, the *keeper*
  thread runs the loop until no task is left on it, then parks until work
  is handed to it again (``_TaskLoop.hand_over``).

A callback scheduled on the loop outside any task (``loop.call_later`` from
a task that then ended), or a task made with ``asyncio.Task(...)`` instead of
``create_task``, runs when the loop next runs, not at its time.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

from .context import TaskContext, task_context

__all__ = ["AsyncCall", "TaskCancelled", "start_call", "event_loop", "call_on_task_loop"]

#: loop turns a borrowing runner takes before it hands the call to the keeper
_TURNS = 3


class TaskCancelled(Exception):
    """An async task call was cancelled (claim lost, timeout, stop): the
    outcome of its future. An ``Exception``, not asyncio's
    ``CancelledError`` (a ``BaseException``), so waiters treat it like any
    failed call."""


class _TaskLoop:
    """The process's task loop, the lock of whoever runs it, and its keeper."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.driving = threading.Lock()
        self._spawned = 0  # tasks that task code created on the loop, not done yet
        self.loop.set_task_factory(self._spawn)
        self._wanted = threading.Event()
        threading.Thread(target=self._keep, name="flowbaton-async-tasks", daemon=True).start()

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro: Any, **settings: Any) -> asyncio.Task[Any]:
        """``create_task`` on the loop, counted: a borrower that leaves such
        a task behind hands the loop to the keeper (cheaper to ask than
        ``asyncio.all_tasks``)."""
        task = asyncio.Task(coro, loop=loop, **settings)
        self._spawned += 1
        task.add_done_callback(self._spawn_done)
        return task

    def _spawn_done(self, task: asyncio.Task[Any]) -> None:
        self._spawned -= 1

    def hand_over(self) -> None:
        """The loop has work nobody is running it for: the keeper takes it."""
        self._wanted.set()

    def _keep(self) -> None:
        asyncio.set_event_loop(self.loop)
        while True:
            self._wanted.wait()
            with self.driving:
                self._wanted.clear()  # work handed over from now on runs in the next round
                self.loop.run_until_complete(_until_idle())

    def borrow(self, call: AsyncCall, start: Callable[[], asyncio.Task[None] | None]) -> bool:
        """Start a call by running the loop on this thread, if nobody runs
        it and this thread runs no loop of its own; False if it could not."""
        if asyncio._get_running_loop() is not None or not self.driving.acquire(blocking=False):
            return False
        try:
            call._borrowed = True
            task = start()
            for _ in range(_TURNS):
                if task is None or task.done():
                    break
                self.loop.stop()  # before run_forever: one turn, I/O polled without waiting
                self.loop.run_forever()
            if call.outcome is None:  # still running: the keeper runs it and ends its future
                call._awaited()
                if task is not None:
                    call._started(task)
                self.hand_over()
            elif self._spawned:  # tasks the call left behind
                self.hand_over()
        finally:
            self.driving.release()
        return True


async def _until_idle() -> None:
    """Return once no other task is left on the loop."""
    me = asyncio.current_task()
    while others := asyncio.all_tasks() - {me}:
        await asyncio.wait(others)


_lock = threading.Lock()
_task_loop: _TaskLoop | None = None


def _the_task_loop() -> _TaskLoop:
    global _task_loop
    with _lock:
        if _task_loop is None:
            _task_loop = _TaskLoop()
        return _task_loop


def event_loop() -> asyncio.AbstractEventLoop:
    """The process's task loop, made on first use. It runs only while it has
    work: hand it work of your own with ``call_on_task_loop``, which wakes
    whoever runs it (``call_soon_threadsafe`` alone would wait for the next
    task call)."""
    return _the_task_loop().loop


def call_on_task_loop(fn: Callable[..., object], *args: Any) -> None:
    """``fn(*args)`` on the task loop, soon, from any thread."""
    tasks = _the_task_loop()
    tasks.loop.call_soon_threadsafe(fn, *args)
    tasks.hand_over()


class AsyncCall:
    """One async task call in flight: how it ended, and a way to stop it.

    A call that ended while ``start_call`` ran (its runner borrowed the
    loop) has its ``outcome`` when ``start_call`` returns, and its future
    never ends: nobody waits for it, and a future's locks would cost as
    much as a no-op task. Any other call ends its future.
    """

    #: ends with the call, unless the call ended inside ``start_call``
    future: Future[Any]

    def __init__(self) -> None:
        #: (result, error) once the call has ended
        self.outcome: tuple[Any, BaseException | None] | None = None
        self._borrowed = False  # ending on the thread that started it, inside start_call
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

    def _awaited(self) -> None:
        """Someone will wait for the call: it ends a future. Made only then
        (a future's locks cost a few microseconds), and always before
        anyone else may run the loop that ends the call."""
        self.future = Future()
        self.future.set_running_or_notify_cancel()
        self._borrowed = False

    def _started(self, task: asyncio.Task[Any]) -> None:
        with self._lock:
            self._task = task
            cancel = self._cancel
        if cancel:  # after its first step, so the coroutine sees it (and settles) even before 3.12
            task.get_loop().call_soon(task.cancel)

    def _end(self, result: Any, error: BaseException | None) -> None:
        self.outcome = (result, error)
        if self._borrowed:
            return
        if error is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(error)


def start_call(make: Callable[[], Awaitable[Any]], ctx: TaskContext | None, name: str) -> AsyncCall:
    """Run ``await make()`` on the task loop with ``ctx`` as its
    ``current_task()`` (a context variable: it follows the coroutine across
    its awaits and never leaks into another task).

    The coroutine settles the call itself as it ends (no done-callback
    turn of the loop), and on Python 3.12+ its first step runs eagerly,
    in the turn that creates it.
    """
    call = AsyncCall()
    tasks = _the_task_loop()
    if not tasks.borrow(call, lambda: _begin(tasks.loop, call, make, ctx, name)):
        call._awaited()
        tasks.loop.call_soon_threadsafe(_begin_on_loop, tasks.loop, call, make, ctx, name)
        tasks.hand_over()
    return call


def _begin(loop: asyncio.AbstractEventLoop, call: AsyncCall, make: Callable[[], Awaitable[Any]],
           ctx: TaskContext | None, name: str) -> asyncio.Task[None] | None:
    """Create the call's task (its first step runs now on 3.12+, else at
    the next turn); None if the call was cancelled before it began."""
    if call._cancel:  # cancelled before it started: it never runs
        call._end(None, TaskCancelled(f"async task call {name} was cancelled"))
        return None
    return asyncio.Task(_settling(make, ctx, call, name), loop=loop, name=name, **_EAGER)


def _begin_on_loop(loop: asyncio.AbstractEventLoop, call: AsyncCall, make: Callable[[], Awaitable[Any]],
                   ctx: TaskContext | None, name: str) -> None:
    task = _begin(loop, call, make, ctx, name)
    if task is not None and not task.done():
        call._started(task)


#: Python 3.12+ can run a task's first step inside ``create_task``.
_EAGER: dict[str, Any] = {"eager_start": True} if sys.version_info >= (3, 12) else {}


async def _settling(make: Callable[[], Awaitable[Any]], ctx: TaskContext | None, call: AsyncCall,
                    name: str) -> None:
    """Await the call and end ``call`` with its outcome: once the coroutine
    has ended, ``finally`` blocks and ``async with`` exits included, since
    they run inside ``make()``."""
    try:
        with task_context(ctx):
            result = await make()
    except asyncio.CancelledError:
        call._end(None, TaskCancelled(f"async task call {name} was cancelled"))
        raise
    except BaseException as error:  # the call carries it to the runner, as a thread's call would
        call._end(None, error)
        if not isinstance(error, Exception):
            raise
    else:
        call._end(result, None)
