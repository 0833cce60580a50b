"""Write garbage straight into a backend's store, under the driver's feet.

One function per operation, dispatching on the URL scheme: flow and task
records, claims (shared stores) and replica presences. Each driver's
author fills in its hook: the record must end up exactly where the driver
reads it, so that ``load_flow``/``load_tasks`` meet the garbage.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from flowbaton.backends import Backend
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.redis.keys import Layout

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


def corrupt_claim(url: str, flow_id: str, *, garbage: str = GARBAGE) -> None:
    """Plant an unreadable claim on ``flow_id`` that never expires by itself:
    a claim key without TTL (Redis), a persistent claim znode (ZooKeeper),
    a claim row whose ``expires_at`` is text (SQLite: ``garbage`` unused).
    Only shared stores: a memory:// claim is a typed object, never decoded."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        _sqlite_execute(url, "INSERT OR REPLACE INTO claims (flow_id, claim_id, epoch, claimed_at, expires_at)"
                        " VALUES (?, 'intruder#1', 1, 0, 'never')", (flow_id,))
    elif scheme == "zookeeper":
        with _kazoo(url) as (client, paths):
            client.create(paths.claim(flow_id), garbage.encode())  # persistent: no session ends it
    elif scheme.startswith("redis"):
        with _redis_client(url) as (client, layout):
            client.set(layout.flow(flow_id).claim, garbage)  # no TTL
    else:
        raise NotImplementedError(f"no corrupt-claim hook for {scheme}://")


def corrupt_replica(
    url: str, replica_id: str, *, backend: Backend | None = None, garbage: str = GARBAGE
) -> None:
    """Plant a live replica presence ``replica_id`` whose record is ``garbage``."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        _memory_backend(backend).plant_replica(replica_id, garbage, 3600)
    elif scheme == "sqlite":
        _sqlite_execute(url, "INSERT OR REPLACE INTO replicas (replica_id, record, expires_at) VALUES (?, ?, ?)",
                        (replica_id, garbage, time.time() + 3600))
    elif scheme == "zookeeper":
        with _kazoo(url) as (client, paths):
            client.create(paths.replica(replica_id), garbage.encode())
    elif scheme.startswith("redis"):
        with _redis_client(url) as (client, layout):
            from flowbaton.backends.redis.keys import GlobalKeys

            keys = GlobalKeys.of(layout.prefix)
            client.hset(keys.replicas, replica_id, garbage)
            client.zadd(keys.replica_expiry, {replica_id: int(time.time() * 1000) + 3_600_000})
    else:
        raise NotImplementedError(f"no corrupt-replica hook for {scheme}://")


def plant_handover(url: str, replica_id: str, key: str, text: str, *, backend: Backend | None = None) -> None:
    """Store ``text`` in ``replica_id``'s mailbox under ``key`` (a flow id,
    "" for the drain), unchecked: a request written by hand or by an intruder."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        _memory_backend(backend)._mailboxes.setdefault(replica_id, {})[key] = text
    elif scheme == "sqlite":
        _sqlite_execute(url, "INSERT OR REPLACE INTO handovers (replica_id, key, record) VALUES (?, ?, ?)",
                        (replica_id, key, text))
    elif scheme == "zookeeper":
        from flowbaton.backends.zookeeper.layout import encode_name

        with _kazoo(url) as (client, paths):
            client.ensure_path(paths.mailbox(replica_id))
            client.create(f"{paths.mailbox(replica_id)}/{encode_name(key)}", text.encode())
    elif scheme.startswith("redis"):
        with _redis_client(url) as (client, layout):
            from flowbaton.backends.redis.keys import mailbox_key

            client.hset(mailbox_key(layout.prefix, replica_id), key, text)
    else:
        raise NotImplementedError(f"no handover hook for {scheme}://")


def plant_undecodable_task(url: str, flow_id: str, record: str) -> None:
    """Store ``record`` as a task of ``flow_id`` under a name that is not
    valid UTF-8 once decoded: a znode ``%FF``, a hash field ``b"\\xff"``, a
    task_id column of bytes 0xFF cast to TEXT. Shared stores only."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        _sqlite_execute(url, "INSERT INTO tasks (flow_id, task_id, record) VALUES (?, CAST(x'ff' AS TEXT), ?)",
                        (flow_id, record))
    elif scheme == "zookeeper":
        with _kazoo(url) as (client, paths):
            client.create(f"{paths.tasks(flow_id)}/%FF", record.encode())
    elif scheme.startswith("redis"):
        with _redis_client(url) as (client, layout):
            client.hset(layout.flow(flow_id).tasks, b"\xff", record)
    else:
        raise NotImplementedError(f"no undecodable-name hook for {scheme}://")


def _sqlite_execute(url: str, sql: str, args: tuple[object, ...]) -> None:
    conn = sqlite3.connect(_sqlite_path(url), timeout=5, isolation_level=None)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


def _sqlite_path(url: str) -> str:
    return os.path.abspath(unquote(urlsplit(url).path[1:]))


@contextmanager
def _kazoo(url: str) -> Iterator[tuple[Any, Any]]:
    """A separate kazoo client on the URL's ensemble, and the driver's layout."""
    from kazoo.client import KazooClient

    from flowbaton.backends.zookeeper.layout import Layout
    from flowbaton.backends.zookeeper.settings import Settings

    settings = Settings.from_url(url, {})
    auth = [("digest", f"{settings.username}:{settings.password}")] if settings.username else None
    client = KazooClient(hosts=settings.hosts, auth_data=auth)
    client.start(timeout=10)
    try:
        yield client, Layout(settings.chroot)
    finally:
        client.stop()
        client.close()


@contextmanager
def _redis_client(url: str) -> Iterator[tuple[Any, Layout]]:
    """A separate client found through the driver's own URL parsing, and
    the namespace's key layout as the driver reads it."""
    from flowbaton.backends.redis.client import Connection
    from flowbaton.backends.redis.layout import resolve_layout
    from flowbaton.backends.redis.url import parse_url

    target = parse_url(url)
    conn = Connection(target)
    try:
        layout = resolve_layout(conn.redis, target.options["prefix"], target.options["shards"], target.cluster,
                                conn.where)
        yield conn.redis, layout
    finally:
        conn.close()


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
    _memory_backend(backend).overwrite_record(flow_id, garbage, task_id=task_id)


def _memory_backend(backend: Backend | None) -> MemoryBackend:
    if not isinstance(backend, MemoryBackend):
        raise ValueError("memory:// keeps its records in the backend object: pass backend=")
    return backend


# ----------------------------------------------------------------- sqlite


def _sqlite(
    url: str, backend: Backend | None, flow_id: str, task_id: str | None, garbage: str
) -> None:
    path = _sqlite_path(url)
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
    with _kazoo(url) as (client, paths):
        client.set(paths.flow(flow_id) if task_id is None else paths.task(flow_id, task_id), garbage.encode())


def _redis(
    url: str, backend: Backend | None, flow_id: str, task_id: str | None, garbage: str
) -> None:
    """Overwrite the flow's string key (or the task's hash field) from a
    separate client, found through the driver's own URL parsing and key layout."""
    from flowbaton.backends.redis.keys import to_bytes

    with _redis_client(url) as (client, layout):
        keys = layout.flow(flow_id)
        if task_id is None:
            written = client.set(keys.flow, garbage, xx=True)
        else:
            field = to_bytes(task_id)
            written = client.hexists(keys.tasks, field) and client.hset(keys.tasks, field, garbage) == 0
        if not written:
            raise LookupError(f"nothing stored for flow {flow_id!r} task {task_id!r} at {keys.flow}")


_HOOKS: dict[str, _Hook] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "zookeeper": _zookeeper,
    "redis": _redis,
    "rediss": _redis,
    "redis+sentinel": _redis,
    "redis+cluster": _redis,
    "rediss+cluster": _redis,
}
