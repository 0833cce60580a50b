"""Write garbage straight into a backend's store, under the driver's feet.

One function per operation, dispatching on the URL scheme. Each driver's
author fills in its hook: the record must end up exactly where the driver
reads it, so that ``load_flow``/``load_tasks`` meet the garbage.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from flowbaton.backends import Backend

GARBAGE = "{not json"

_Hook = Callable[[str, "Backend | None", str, "str | None", str], None]


def corrupt_flow(
    url: str, flow_id: str, *, backend: Backend | None = None, garbage: str = GARBAGE
) -> None:
    """Replace the stored record of flow ``flow_id`` with ``garbage``.
    ``backend`` is needed where the store lives in the object (memory)."""
    _hook(url)(url, backend, flow_id, None, garbage)


def corrupt_task(
    url: str, flow_id: str, task_id: str, *, backend: Backend | None = None,
    garbage: str = GARBAGE,
) -> None:
    """Replace the stored record of task ``task_id`` of ``flow_id`` with ``garbage``."""
    _hook(url)(url, backend, flow_id, task_id, garbage)


def _hook(url: str) -> _Hook:
    scheme = urlsplit(url).scheme
    try:
        return _HOOKS[scheme]
    except KeyError:
        raise NotImplementedError(f"no corrupt-record hook for {scheme}://") from None


# ----------------------------------------------------------------- memory


def _memory(
    url: str, backend: Backend | None, flow_id: str, task_id: str | None, garbage: str
) -> None:
    if backend is None:
        raise ValueError("memory:// keeps its records in the backend object: pass backend=")
    stored = backend._flows[flow_id]  # type: ignore[attr-defined]
    if task_id is None:
        stored.flow = garbage
    else:
        stored.tasks[task_id] = garbage


# ----------------------------------------------------------------- sqlite


def _sqlite(
    url: str, backend: Backend | None, flow_id: str, task_id: str | None, garbage: str
) -> None:
    path = os.path.abspath(unquote(urlsplit(url).path[1:]))
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        if task_id is None:
            sql, args = "UPDATE flows SET record = ? WHERE id = ?", (garbage, flow_id)
        else:
            sql = "UPDATE tasks SET record = ? WHERE flow_id = ? AND task_id = ?"
            args = (garbage, flow_id, task_id)
        if conn.execute(sql, args).rowcount != 1:
            raise LookupError(f"nothing stored for flow {flow_id!r} task {task_id!r} in {path}")
    finally:
        conn.close()


# -------------------------------------------------- zookeeper and redis


def _zookeeper(
    url: str, backend: Backend | None, flow_id: str, task_id: str | None, garbage: str
) -> None:
    """Set the flow's (or task's) znode data from a separate kazoo client."""
    from kazoo.client import KazooClient

    from flowbaton.backends.zookeeper.layout import Layout
    from flowbaton.backends.zookeeper.settings import Settings

    settings = Settings.from_url(url, {})
    paths = Layout(settings.chroot)
    path = paths.flow(flow_id) if task_id is None else paths.task(flow_id, task_id)
    auth = [("digest", f"{settings.username}:{settings.password}")] if settings.username else None
    client = KazooClient(hosts=settings.hosts, auth_data=auth)
    client.start(timeout=10)
    try:
        client.set(path, garbage.encode())
    finally:
        client.stop()
        client.close()


def _redis(
    url: str, backend: Backend | None, flow_id: str, task_id: str | None, garbage: str
) -> None:
    """Overwrite the flow's string key (or the task's hash field) from a
    separate client, found through the driver's own URL parsing and key layout."""
    from flowbaton.backends.redis.client import Connection
    from flowbaton.backends.redis.keys import FlowKeys, to_bytes
    from flowbaton.backends.redis.url import parse_url

    target = parse_url(url)
    keys = FlowKeys.of(target.options["prefix"], flow_id)
    conn = Connection(target)
    try:
        client = conn.redis
        if task_id is None:
            written = client.set(keys.flow, garbage, xx=True)
        else:
            field = to_bytes(task_id)
            written = client.hexists(keys.tasks, field) and client.hset(keys.tasks, field, garbage) == 0
        if not written:
            raise LookupError(f"nothing stored for flow {flow_id!r} task {task_id!r} at {keys.flow}")
    finally:
        conn.close()


_HOOKS: dict[str, _Hook] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "zookeeper": _zookeeper,
    "redis": _redis,
    "rediss": _redis,
    "redis+sentinel": _redis,
}
