# mypy: disable-error-code="no-untyped-call"
# (redis-py leaves a few entry points unannotated; types-redis annotates them.)
"""Server settings that can lose claims or data, found at connect time.

A claim is a key with a TTL. ``maxmemory-policy`` other than ``noeviction``
lets Redis evict it (or a task record) under memory pressure; with
persistence off a restart forgets every claim and record; and writing to a
replica endpoint fails (READONLY) or, with a writable replica, is lost at the
next resync. CONFIG may be renamed or refused by ACLs (managed services):
then we say we could not check instead of staying silent.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions as rex

from ._types import Client

__all__ = ["server_warnings", "cluster_warnings"]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def server_warnings(client: Client, where: str, *, failover: bool = False) -> list[str]:
    """Plain-language warnings about ``client``'s server (may raise RedisError
    for connection problems; the caller retries). ``failover``: the URL goes
    through Sentinel, so a replica may be promoted."""
    found = _config_warnings(client, where)
    try:
        role: list[Any] = client.execute_command("ROLE") or []
    except rex.ResponseError as err:
        return [*found, f"{where}: cannot check the server role (ROLE refused: {err})"]
    return found + _role_warnings(role, where) + _split_brain_warnings(client, role, where, failover)


def _config(client: Client, name: str) -> str:
    reply = client.config_get(name)
    return next((_text(v) for k, v in reply.items() if _text(k) == name), "")


def _config_warnings(client: Client, where: str) -> list[str]:
    try:
        policy = _config(client, "maxmemory-policy")
        appendonly = _config(client, "appendonly")
        save = _config(client, "save")
    except rex.ResponseError as err:  # unknown command (renamed) or NOPERM
        return [
            f"{where}: cannot read the server configuration (CONFIG GET refused: {err}); "
            "make sure maxmemory-policy is noeviction and persistence is on"
        ]
    found = []
    if policy and policy != "noeviction":
        found.append(
            f"{where}: maxmemory-policy is {policy}: Redis may evict claim keys "
            "and records under memory pressure; use noeviction"
        )
    if appendonly == "no" and not save.strip():
        found.append(
            f"{where}: persistence is off (appendonly no, save \"\"): a restart "
            "loses every claim and record"
        )
    return found


def _role_warnings(role: list[Any], where: str) -> list[str]:
    name = _text(role[0]) if role else "unknown"
    if name != "master":
        return [
            f"{where}: connected to a replica (ROLE is {name}), not a primary: writes "
            "fail or are lost; point the URL at the primary or use redis+sentinel://"
        ]
    return []


def _split_brain_warnings(client: Client, role: list[Any], where: str, failover: bool) -> list[str]:
    """A primary that can be failed over but accepts writes no replica has
    seen can come back as a second master after a restart and acknowledge
    writes Sentinel later throws away: whole submitted flows, not just
    progress (chaos harness, bug 3). ``min-replicas-to-write`` makes it refuse
    such writes instead."""
    try:
        has_replicas = bool(role) and _text(role[0]) == "master" and len(role) > 2 and bool(role[2])
        if not (failover or has_replicas):
            return []
        minimum = _config(client, "min-replicas-to-write")
    except rex.ResponseError:
        return []  # already reported by the checks above
    if minimum in ("", "0"):
        return [
            f"{where}: min-replicas-to-write is 0 on a primary with replicas or Sentinel: after a "
            "failover a restarted old primary can acknowledge writes that are then lost (submitted "
            "flows included); set min-replicas-to-write 1 and min-replicas-max-lag 10"
        ]
    return []


def cluster_warnings(client: Any, where: str) -> list[str]:
    """``server_warnings`` of every primary of a Redis Cluster (one with a
    replica can be failed over to it, so it must refuse writes no replica
    saw: ``min-replicas-to-write``; one without has nobody to fail over
    to, as a lone Redis), plus the cluster's own settings."""
    primaries = client.get_primaries()
    if not primaries:
        return [f"{where}: the cluster reports no primary"]
    found: list[str] = []
    for node in primaries:
        name = f"{where} node {node.host}:{node.port}"
        server = client.get_redis_connection(node)
        found += server_warnings(server, name)
        found += _validity_warnings(server, name)
    return found


def _validity_warnings(client: Client, where: str) -> list[str]:
    """``cluster-replica-validity-factor 0`` lets a replica however far
    behind be promoted: acknowledged writes (a claim's epoch, a task's
    result) can then be lost in a failover."""
    try:
        factor = _config(client, "cluster-replica-validity-factor")
    except rex.ResponseError:
        return []
    if factor == "0":
        return [f"{where}: cluster-replica-validity-factor is 0: a replica however stale may be promoted and "
                "acknowledged writes lost; keep the default (10)"]
    return []
