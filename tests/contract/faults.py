"""Faults the contract suite injects, the way each backend meets them.

Dying claims: lease backends (memory, sqlite, redis) wait until the lease
runs out; session backends ("session" capability, ZooKeeper) expire the
holder's session.

Lost replies (``claim_reply_lost``): the server applies a claim and the
reply never reaches the driver, as when the connection resets right after
the server answered. Redis drops the reply of the claim script, ZooKeeper
that of the claim's ``multi``, both through the client library's public
methods; memory and SQLite have no reply to lose (see ``_nothing_to_lose``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

from flowbaton.backends import Backend

from .helpers import wait_until


def _expire_zookeeper_session(holder: Backend) -> None:
    """Hook for the ZooKeeper driver: expire ``holder``'s session on the
    server (kazoo test harnesses do it by closing a second client that
    shares the session id and password)."""
    from tests.servers.zookeeper import expire_session as expire

    expire(holder)


_EXPIRE_SESSION: dict[str, Callable[[Backend], None]] = {
    "zookeeper": _expire_zookeeper_session,
}


def expire_session(holder: Backend) -> None:
    """End the session of a session backend (its claims and presence die)."""
    scheme = urlsplit(holder.url).scheme
    try:
        expire = _EXPIRE_SESSION[scheme]
    except KeyError:
        raise NotImplementedError(f"{scheme}: no session to expire") from None
    expire(holder)


def lose_claim(holder: Backend, flow_id: str) -> None:
    """Return once the claim ``holder`` has on ``flow_id`` is dead (taken by
    nobody yet); the claim must have been made with a short lease."""
    if "session" in holder.capabilities:
        expire_session(holder)
    wait_until(lambda: holder.current_claim(flow_id) is None, f"claim on {flow_id} to expire")


def lose_presence(holder: Backend, replica_id: str) -> None:
    """Return once ``replica_id`` (registered with a short lease) is gone."""
    if "session" in holder.capabilities:
        expire_session(holder)

    def gone() -> bool:
        return all(r.replica_id != replica_id for r in holder.list_replicas())

    wait_until(gone, f"replica {replica_id} to expire")


# ------------------------------------------------------------ lost replies


@contextmanager
def _nothing_to_lose(backend: Backend) -> Iterator[None]:
    """memory and SQLite apply and answer a claim in one local call, inside
    one lock or one transaction that commits or raises having changed
    nothing: there is no reply in flight to lose, so no fault to inject."""
    yield


@contextmanager
def _lose_redis_claim_reply(backend: Backend) -> Iterator[None]:
    """The claim script runs on the server; redis-py then raises as if the
    connection reset before the reply arrived (once). On the client class
    the driver holds: ``Redis``, or ``RedisCluster`` for a cluster."""
    import redis

    from flowbaton.backends.redis.scripts import SCRIPTS

    kind = type(backend._conn.redis)  # type: ignore[attr-defined]
    original = kind.execute_command
    left = [SCRIPTS["claim"].sha]

    def execute(client: Any, *args: Any, **options: Any) -> Any:
        reply = original(client, *args, **options)
        if left and args[:2] == ("EVALSHA", left[0]):
            left.clear()
            raise redis.ConnectionError("connection reset after the claim script ran (injected)")
        return reply

    with mock.patch.object(kind, "execute_command", execute):
        yield
    assert not left, "no claim script reached the server: nothing was lost"


@contextmanager
def lose_zookeeper_claim_reply(backend: Backend, error: type[Exception] | None = None) -> Iterator[None]:
    """The next ``multi`` of ``backend`` (its claim's) is committed on the
    server, then its reply is lost: kazoo answers ``error`` instead (default
    ConnectionLoss, which the driver retries; MarshallingError, a reply that
    cannot be read, it does not). Through the public ``ZooKeeperBackend.kazoo``
    client and kazoo's public transaction API."""
    from kazoo.exceptions import ConnectionLoss

    client = backend.kazoo  # type: ignore[attr-defined]
    original = client.transaction
    left = [error or ConnectionLoss]

    def transaction() -> Any:
        txn = original()
        if left:
            txn.commit_async = _losing(client, txn.commit_async, left.pop())
        return txn

    client.transaction = transaction
    try:
        yield
    finally:
        del client.transaction  # the class's method again
    assert not left, "no multi reached the server: nothing was lost"


def _losing(client: Any, commit: Callable[[], Any], error: type[Exception]) -> Callable[[], Any]:
    def commit_and_lose_the_reply() -> Any:
        commit().get(timeout=10)  # applied by the server
        lost = client.handler.async_result()
        lost.set_exception(error("reply lost after the multi was applied (injected)"))
        return lost

    return commit_and_lose_the_reply


_LOSE_CLAIM_REPLY: dict[str, Callable[[Backend], AbstractContextManager[None]]] = {
    "memory": _nothing_to_lose,
    "sqlite": _nothing_to_lose,
    "zookeeper": lose_zookeeper_claim_reply,
    "redis": _lose_redis_claim_reply,
    "rediss": _lose_redis_claim_reply,
    "redis+sentinel": _lose_redis_claim_reply,
    "redis+cluster": _lose_redis_claim_reply,
}


def claim_reply_lost(backend: Backend) -> AbstractContextManager[None]:
    """Inside: the next ``claim`` on ``backend`` is applied by the server and
    its reply lost once; the driver's own retry must resolve it."""
    return _LOSE_CLAIM_REPLY[urlsplit(backend.url).scheme](backend)
