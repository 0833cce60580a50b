"""The asyncio face of flowbaton: the same names and meaning, never blocking the loop.

For services that are asyncio applications (FastAPI, aiohttp, Starlette)::

    async with flowbaton.aio.connect(url, allow=["myservice."]) as coord:
        await coord.start(concurrency=8)
        flow_id = await coord.submit("myservice.flows:provision", kwargs={"network": "n1"})
        report = await coord.wait(flow_id, timeout=60)

    report = await flowbaton.aio.run("myservice.flows:provision", kwargs={...}, backend=url)

What runs where, and why:

- Every call that touches the backend (opening it, submitting, reading a
  flow while waiting, starting and stopping the replica) runs on a worker
  thread (``asyncio.to_thread``), so the host's loop keeps serving. kazoo
  is threaded; the Redis and SQLite drivers are too, and one driver per
  backend keeps fencing in one place (a second, asyncio driver for Redis
  would be a second copy of every fenced script call to keep in step).
- ``wait`` polls on the host's loop with ``asyncio.sleep`` between reads, so
  a thousand waiters cost a thousand sleeping coroutines, not a thousand
  blocked threads.
- A started replica keeps its claim loop and lease keeping on threads of
  its own: a busy host loop can never starve a lease renewal into a
  self-fence. Its ``async def`` tasks run on flowbaton's task loop
  (``engine.asyncloop``), one per process, so a task that blocks never
  blocks the host's requests, and the host's slow handlers never delay a
  task's cancellation when its claim is lost.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .backends.base import Backend
from .coordinator import Coordinator
from .coordinator import connect as _connect
from .coordinator import run as _run
from .coordinator.waiting import SETTLED_STATES, Polls
from .engine import FlowReport, load_report

__all__ = ["AsyncCoordinator", "connect", "run"]

_T = TypeVar("_T")


async def _off_loop(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> _T:
    return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


def connect(
    url: str | Backend | None = None,
    replica_id: str | None = None,
    allow: Sequence[str] | None = None,
    lease: float = 10.0,
    max_takeovers: int | None = 3,
    **options: Any,
) -> AsyncCoordinator:
    """``flowbaton.connect`` for asyncio: the arguments are the same; the
    backend is opened on a worker thread at the first call that needs it
    (or at ``async with``), so calling this never blocks the loop."""
    return AsyncCoordinator(lambda: _connect(url, replica_id, allow, lease, max_takeovers, **options))


class AsyncCoordinator:
    """A replica (``Coordinator``) whose every call is awaitable."""

    def __init__(self, open_coordinator: Callable[[], Coordinator]) -> None:
        self._open = open_coordinator
        self._coordinator: Coordinator | None = None
        self._opening = asyncio.Lock()

    async def coordinator(self) -> Coordinator:
        """The threaded replica underneath (opened on first use): for what
        has no async face (metrics, ``serve_http``), which do not block."""
        async with self._opening:
            if self._coordinator is None:
                self._coordinator = await _off_loop(self._open)
            return self._coordinator

    async def submit(
        self,
        factory: str | Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        name: str | None = None,
        flow_id: str | None = None,
        allow: Sequence[str] | None = None,
        by_name: bool = False,
    ) -> str:
        """``Coordinator.submit``: validate (the factory is imported and
        called once, unless ``by_name``) and store a new flow; its id."""
        coord = await self.coordinator()
        return await _off_loop(coord.submit, factory, args, kwargs, inputs, name=name, flow_id=flow_id, allow=allow,
                               by_name=by_name)

    async def wait(self, flow_id: str, timeout: float | None = 60.0) -> FlowReport:
        """``Coordinator.wait``: the flow's report once it is done or HELD;
        ``TimeoutError`` otherwise. Sleeps on the loop between reads."""
        coord = await self.coordinator()
        backend = coord.backend
        polls = Polls(flow_id, timeout, asyncio.get_running_loop().time)
        while True:
            flow = await _off_loop(backend.load_flow, flow_id)
            if flow.state in SETTLED_STATES:
                return FlowReport.of(flow, await _off_loop(backend.load_tasks, flow_id))
            await asyncio.sleep(polls.pause(flow.state))

    async def report(self, flow_id: str) -> FlowReport:
        """The flow's report now, whatever its state (``FlowNotFound`` if
        there is none): for a status endpoint that must not wait."""
        coord = await self.coordinator()
        return await _off_loop(load_report, coord.backend, flow_id)

    async def start(self, concurrency: int = 4) -> AsyncCoordinator:
        """``Coordinator.start``: claim and run flows, up to ``concurrency``
        at once, on the replica's own threads (see the module)."""
        coord = await self.coordinator()
        await _off_loop(coord.start, concurrency)
        return self

    async def stop(self, timeout: float | None = None) -> bool:
        """``Coordinator.stop``: graceful, within ``timeout`` (default the
        replica's ``stop_timeout``); False when flows were given up on."""
        if self._coordinator is None:
            return True
        return await _off_loop(self._coordinator.stop, timeout)

    async def close(self) -> None:
        """Stop (if started) and close the backend this replica opened."""
        if self._coordinator is not None:
            await _off_loop(self._coordinator.close)

    async def __aenter__(self) -> AsyncCoordinator:
        await self.coordinator()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def run(
    factory: str | Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    **options: Any,
) -> FlowReport:
    """``flowbaton.run`` for asyncio: create (or resume) the flow and run it
    to its end in this process, on a worker thread; its ``async def`` tasks
    run on flowbaton's task loop. ``options`` are ``run``'s."""
    return await _off_loop(_run, factory, args, kwargs, inputs, **options)
