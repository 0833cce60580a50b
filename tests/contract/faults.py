"""Make a claim (or a replica's presence) die, the way each backend lets it die.

Lease backends (memory, sqlite, redis): wait until the lease runs out.
Session backends ("session" capability, ZooKeeper): the claim is the session,
so the test expires the holder's session; the ZooKeeper driver's author adds
the hook below.
"""

from __future__ import annotations

from collections.abc import Callable
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
