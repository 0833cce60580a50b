"""Session events, delivered off kazoo's connection thread.

kazoo calls its listeners on the thread that runs the connection: a listener
that blocks there (a coordinator taking a lock, a driver reading ZooKeeper)
stalls every request and ping of the session. So the kazoo listener only
puts the event on a queue; one worker thread calls our listeners in order.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from ..base import CONNECTED, LOST, SUSPENDED, StateListener

__all__ = ["EventDispatcher"]

log = logging.getLogger(__name__)

_STOP = object()


class EventDispatcher:
    """Filters kazoo's state changes into SUSPENDED / LOST / CONNECTED (the
    latter only as a recovery, not for the first connection) and calls
    ``on_event`` hooks then listeners on a worker thread."""

    def __init__(self, name: str) -> None:
        self._listeners: list[StateListener] = []
        self._hooks: list[Callable[[str], None]] = []
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._healthy = False
        self._seen_connected = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def add_hook(self, hook: Callable[[str], None]) -> None:
        """Driver housekeeping, run on the worker before the listeners."""
        self._hooks.append(hook)

    def kazoo_state(self, state: str) -> None:
        """Called on kazoo's thread: decide and enqueue, nothing else."""
        if self._closed:
            return  # close() stops the client, which reports LOST: not news
        if state == CONNECTED:
            first = not self._seen_connected
            self._seen_connected = True
            if self._healthy:
                return
            self._healthy = True
            if first:
                return
        elif state in (SUSPENDED, LOST):
            self._healthy = False
        else:
            return
        self._queue.put(state)

    def close(self) -> None:
        self._closed = True
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            state = self._queue.get()
            if state is _STOP:
                return
            assert isinstance(state, str)
            for call in [*self._hooks, *self._listeners]:
                try:
                    call(state)
                except Exception:  # a faulty listener must not stop the others
                    log.exception("zookeeper state listener %r failed on %s", call, state)
