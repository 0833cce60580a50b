"""TCP proxies the harness controls: how one replica is cut off from the backend.

Each replica that can be cut reaches every backend server through a proxy
port of its own, so cutting it leaves the other replicas and the servers
alone. All proxies run on one asyncio loop in a daemon thread.

Two ways to cut a group (one replica's proxies):

- ``reset``: open connections are aborted (the client sees a reset) and new
  ones are refused the same way; the client notices at once.
- ``blackhole``: nothing flows either way, but nothing is closed either. New
  connections are accepted and left hanging. Bytes already sent stay queued
  and are delivered when the cut heals: a write its sender gave up on can
  land late, which is exactly what fencing has to survive.

``upstream`` is a function returning the (host, port) to dial for each new
connection, so a proxy can follow a moving target (the current Redis
primary, as Sentinel names it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["CUT_MODES", "Proxy", "ProxyHub", "Upstream"]

log = logging.getLogger("flowbaton.testing.chaos")

CUT_MODES = ("reset", "blackhole")
Upstream = Callable[[], tuple[str, int]]
_T = TypeVar("_T")
_CHUNK = 65536


class Proxy:
    """One listening port forwarding to ``upstream``; cut and healed with its group."""

    def __init__(self, group: str, upstream: Upstream, open_: asyncio.Event) -> None:
        self.group = group
        self.upstream = upstream
        self.port = 0
        self.mode = ""  # "" = open, else one of CUT_MODES
        self._open = open_
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None

    async def listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "reset":
            writer.transport.abort()
            return
        await self._open.wait()  # blackholed: the connection hangs until healed
        try:
            host, port = await asyncio.get_running_loop().run_in_executor(None, self.upstream)
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except Exception as err:  # upstream down or unknown: the client sees a reset
            log.debug("proxy %s: no upstream: %s", self.group, err)
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                # Cut after reading: hold the bytes and deliver them on heal,
                # like a packet stuck in a partition.
                await self._open.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def abort_all(self) -> None:
        for pair in list(self._pairs):
            for writer in pair:
                writer.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        self.abort_all()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()


class ProxyHub:
    """Every proxy of a run, grouped by replica, on one event loop thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxies", daemon=True)
        self._thread.start()
        self._groups: dict[str, list[Proxy]] = {}
        self._gates: dict[str, asyncio.Event] = {}

    def _run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=30)

    def _call(self, fn: Callable[[], _T]) -> _T:
        async def call() -> _T:
            return fn()

        result: _T = self._run(call())
        return result

    def add(self, group: str, upstream: Upstream) -> Proxy:
        """A new proxy in ``group``; its ``port`` is bound when this returns."""
        async def make() -> Proxy:
            gate = self._gates.setdefault(group, asyncio.Event())
            if not self._groups.get(group):
                gate.set()
            proxy = Proxy(group, upstream, gate)
            await proxy.listen()
            return proxy

        proxy: Proxy = self._run(make())
        self._groups.setdefault(group, []).append(proxy)
        return proxy

    def cut(self, group: str, mode: str) -> None:
        if mode not in CUT_MODES:
            raise ValueError(f"cut mode must be one of {CUT_MODES}, not {mode!r}")

        def cut() -> None:
            self._gates[group].clear()
            for proxy in self._groups[group]:
                proxy.mode = mode
                if mode == "reset":
                    proxy.abort_all()

        self._call(cut)

    def heal(self, group: str) -> None:
        def heal() -> None:
            for proxy in self._groups.get(group, []):
                proxy.mode = ""
            if group in self._gates:
                self._gates[group].set()

        self._call(heal)

    def heal_all(self) -> None:
        for group in list(self._groups):
            self.heal(group)

    def close(self) -> None:
        async def close_all() -> None:
            for proxies in self._groups.values():
                for proxy in proxies:
                    await proxy.close()
            # Connections still pumping (or held by a cut) end here, quietly.
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        with contextlib.suppress(Exception):
            self._run(close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._loop.is_running():
            self._loop.close()
