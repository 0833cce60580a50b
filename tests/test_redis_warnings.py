"""Redis driver: warnings about server settings that can lose claims."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flowbaton.backends import open_backend
from tests.contract.helpers import make_flow
from tests.servers.redis import AnyRedisCluster, LocalRedis

pytestmark = pytest.mark.redis


def _warnings_of(url: str) -> list[str]:
    backend = open_backend(url, retry_deadline=2.0)
    try:
        return backend.warnings()
    finally:
        backend.close()


def test_a_safe_server_gives_no_warning(redis_server: Any) -> None:
    assert _warnings_of(redis_server.url(namespace="w")) == []


def test_eviction_policy_is_warned_and_logged(
    make_redis_server: Callable[..., LocalRedis], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_redis_server({"maxmemory-policy": "allkeys-lru"})
    with caplog.at_level(logging.WARNING, logger="flowbaton"):
        found = _warnings_of(server.url())
    assert len(found) == 1 and "maxmemory-policy is allkeys-lru" in found[0]
    assert any("allkeys-lru" in r.getMessage() for r in caplog.records)


def test_persistence_off_is_warned(make_redis_server: Callable[..., LocalRedis]) -> None:
    server = make_redis_server({"appendonly": "no", "save": '""'})
    found = _warnings_of(server.url())
    assert len(found) == 1 and "persistence is off" in found[0]


def test_snapshots_alone_count_as_persistence(make_redis_server: Callable[..., LocalRedis]) -> None:
    server = make_redis_server({"appendonly": "no", "save": "3600 1"})
    assert _warnings_of(server.url()) == []


def test_a_replica_endpoint_is_warned(make_redis_server: Callable[..., LocalRedis]) -> None:
    primary = make_redis_server()
    replica = make_redis_server({"replicaof": f"127.0.0.1 {primary.port}"})
    found = _warnings_of(replica.url())
    assert any("connected to a replica" in w for w in found), found


def test_config_refused_is_said(make_redis_server: Callable[..., LocalRedis]) -> None:
    """Managed services often deny CONFIG: say we could not check."""
    server = make_redis_server()
    with server.client() as client:
        client.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-config")
    url = server.url().replace("redis://", "redis://app:pw@")
    found = _warnings_of(url)
    assert len(found) == 1 and "CONFIG GET refused" in found[0]


def test_the_cli_leaves_setting_warnings_to_check_and_replicas(
    make_redis_server: Callable[..., LocalRedis], capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator command does not repeat "persistence is off" after every
    call; ``check`` reports it (exit 1) and ``replicas`` lists it."""
    from flowbaton.cli.main import main

    server = make_redis_server({"appendonly": "no", "save": '""'})
    assert main(["--backend", server.url(), "flows"]) == 0
    assert "persistence" not in capsys.readouterr().err
    assert main(["--backend", server.url(), "check"]) == 1
    assert "persistence is off" in capsys.readouterr().out
    assert main(["--backend", server.url(), "replicas"]) == 0
    assert "persistence is off" in capsys.readouterr().out


# ----------------------------------------------------------- Redis Cluster
#
# The session's cluster is shared: every setting changed below is put back
# in a ``finally``.


@contextmanager
def primaries_configured(cluster: AnyRedisCluster, settings: dict[str, str], only: int | None = None) -> Iterator[None]:
    """``CONFIG SET`` on every primary (or on ``cluster.primaries()[only]``),
    each one's previous values restored on the way out."""
    with cluster.client() as client:
        wanted = {str(node) for node in cluster.primaries()} if only is None else {str(cluster.primaries()[only])}
        servers = [client.get_redis_connection(node) for node in client.get_primaries()
                   if f"{node.host}:{node.port}" in wanted]
        assert len(servers) == len(wanted)
        before = [{name: server.config_get(name)[name] for name in settings} for server in servers]
        try:
            for server in servers:
                for name, value in settings.items():
                    server.config_set(name, value)
            yield
        finally:
            for server, previous in zip(servers, before, strict=True):
                for name, value in previous.items():
                    server.config_set(name, value)


def _named_nodes(cluster: AnyRedisCluster, found: list[str], problem: str) -> set[str]:
    """The primaries some warning names as having ``problem``."""
    return {str(node) for node in cluster.primaries() if any(f" node {node}: {problem}" in w for w in found)}


def test_a_cluster_without_min_replicas_to_write_is_warned_per_primary(redis_cluster: AnyRedisCluster) -> None:
    """Every primary can be failed over to its replica: each one that
    acknowledges writes no replica has seen can lose them (submitted flows
    included), so each is named."""
    found = _warnings_of(redis_cluster.url(f"w{uuid.uuid4().hex[:8]}"))
    primaries = {str(node) for node in redis_cluster.primaries()}
    assert _named_nodes(redis_cluster, found, "min-replicas-to-write is 0") == primaries, found
    assert len(found) == len(primaries), found  # nothing else: persistence on, noeviction


def test_min_replicas_to_write_on_every_primary_silences_the_warning(redis_cluster: AnyRedisCluster) -> None:
    """With ``min-replicas-to-write 1`` each primary still takes writes (each
    has a connected replica): the backend opens, writes its layout record,
    and has nothing to warn about."""
    with primaries_configured(redis_cluster, {"min-replicas-to-write": "1", "min-replicas-max-lag": "10"}):
        backend = open_backend(redis_cluster.url(f"w{uuid.uuid4().hex[:8]}"), retry_deadline=2.0)
        try:
            assert backend.warnings() == []
            backend.create_flow(make_flow("f"))
            assert backend.load_flow("f").id == "f"
        finally:
            backend.close()


def test_a_zero_replica_validity_factor_is_warned(redis_cluster: AnyRedisCluster) -> None:
    """Factor 0 lets a replica however stale be promoted: a claim's epoch
    or a task's result acknowledged before can vanish in a failover."""
    with primaries_configured(redis_cluster, {"cluster-replica-validity-factor": "0"}, only=1):
        found = _warnings_of(redis_cluster.url(f"w{uuid.uuid4().hex[:8]}"))
    named = _named_nodes(redis_cluster, found, "cluster-replica-validity-factor is 0")
    assert named == {str(redis_cluster.primaries()[1])}, found
    # Restored: the warning goes with the setting, the others stay as they were.
    assert sorted(_warnings_of(redis_cluster.url(f"w{uuid.uuid4().hex[:8]}"))) == sorted(
        w for w in found if "cluster-replica-validity-factor" not in w)
