"""The Redis Cluster test fixture itself (``redis_cluster``): what it starts
is a real cluster of three primaries with a replica each, keys spread over
the primaries by hash tag, and its fault injectors do what they say. The
session's cluster is shared: a test that kills a node heals it last."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from flowbaton.testing.servers import ServerError
from flowbaton.testing.servers.redis_cluster import ENV_URL, ExternalRedisCluster, Node, start_best_cluster
from tests.servers.redis import AnyRedisCluster

pytestmark = pytest.mark.redis

TAGS = [f"t{i}" for i in range(30)]  # fixed, so their slots (and owners) are the same every run


@contextmanager
def plain(node: Node) -> Iterator[redis.Redis]:
    """A client for one node alone (no redirections followed)."""
    client = redis.Redis(host=node.host, port=node.port, socket_timeout=5, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def holders(cluster: AnyRedisCluster, slot: int) -> list[Node]:
    """The primaries that hold keys in ``slot``, asked one by one."""
    found = []
    for node in cluster.primaries():
        with plain(node) as client:
            if int(client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)):
                found.append(node)
    return found


@contextmanager
def healing(cluster: AnyRedisCluster) -> Iterator[None]:
    try:
        yield
    finally:
        cluster.heal()


def test_three_primaries_with_a_replica_each_serve_every_slot(redis_cluster: AnyRedisCluster) -> None:
    primaries, replicas = redis_cluster.primaries(), redis_cluster.replicas()
    assert len(primaries) == len(replicas) == 3
    with redis_cluster.client() as client:
        ranges = client.cluster_slots()
    assert sum(end - start + 1 for start, end in ranges) == 16384
    assert {Node(*owner["primary"]) for owner in ranges.values()} == set(primaries)
    for index, replica in enumerate(replicas):  # in their primaries' order
        with plain(replica) as client:
            info = client.info("replication")
        assert (info["role"], info["master_link_status"]) == ("slave", "up")
        assert Node(info["master_host"], int(info["master_port"])) == primaries[index]


def test_keys_of_different_hash_tags_land_on_different_primaries(redis_cluster: AnyRedisCluster) -> None:
    namespace = uuid.uuid4().hex[:8]
    keys = [f"{{{tag}}}:{namespace}" for tag in TAGS]
    with redis_cluster.client() as client:
        for key in keys:
            client.set(key, "v", ex=60)
        slots = {key: client.keyslot(key) for key in keys}
    owners = {key: holders(redis_cluster, slot) for key, slot in slots.items()}
    assert all(len(found) == 1 for found in owners.values()), owners
    assert {found[0] for found in owners.values()} == set(redis_cluster.primaries())


def tagged_key(cluster: AnyRedisCluster, index: int) -> str:
    """A fresh key whose hash tag the primary ``cluster.primaries()[index]`` serves
    (by the cluster's own CLUSTER SLOTS)."""
    owner = cluster.primaries()[index]
    with cluster.client() as client:
        ranges = client.cluster_slots()
        served = [(start, end) for (start, end), node in ranges.items() if Node(*node["primary"]) == owner]
        tag = next(tag for tag in TAGS if any(start <= client.keyslot(tag) <= end for start, end in served))
    return f"{{{tag}}}:{uuid.uuid4().hex[:8]}"


@pytest.mark.slow
def test_killing_a_primary_promotes_its_replica_and_writes_go_on(redis_cluster: AnyRedisCluster) -> None:
    cluster = redis_cluster
    heir = cluster.replicas()[0]  # the replica of primaries()[0]
    key = tagged_key(cluster, 0)
    with cluster.client() as client, healing(cluster):
        client.set(key, "before")
        cluster.wait_replicated()
        old = cluster.kill_primary(0)
        new = cluster.wait_failover(old)
        assert new == heir and cluster.primaries()[0] == new
        assert old not in cluster.primaries() + cluster.replicas()
        # The same client object: it must find the promoted replica by itself.
        assert client.get(key) == b"before"
        client.set(key, "after")
        assert client.get(key) == b"after"


@pytest.mark.slow
def test_a_restarted_primary_rejoins_as_a_replica_of_its_successor(redis_cluster: AnyRedisCluster) -> None:
    cluster = redis_cluster
    key = tagged_key(cluster, 2)
    with healing(cluster):
        old = cluster.kill_primary(2)
        new = cluster.wait_failover(old)
        with cluster.client() as client:
            client.set(key, "written while it was down")
        cluster.restart(old)
        assert (len(cluster.primaries()), len(cluster.replicas())) == (3, 3)
        assert cluster.replicas()[2] == old and cluster.primaries()[2] == new
        with plain(old) as client:
            client.execute_command("READONLY")
            assert client.get(key) == "written while it was down"


def test_an_external_cluster_is_usable_but_not_breakable(redis_cluster: AnyRedisCluster) -> None:
    external = ExternalRedisCluster(redis_cluster.url(namespace="x"))
    assert external.primaries() == redis_cluster.primaries()
    assert external.url(namespace="y", retry_deadline=5).endswith("/?prefix=y&retry_deadline=5")
    with external.client() as client:
        assert client.ping()
    with pytest.raises(ServerError, match=ENV_URL):
        external.kill_primary(0)
    with pytest.raises(ServerError, match="redis\\+cluster://"):
        ExternalRedisCluster("redis://127.0.0.1:6379/0")


def test_the_local_url_names_the_primaries_as_seeds(redis_cluster: AnyRedisCluster) -> None:
    seeds = ",".join(str(node) for node in redis_cluster.primaries())
    assert redis_cluster.url("ns", retry_deadline=3) == f"redis+cluster://{seeds}/?prefix=ns&retry_deadline=3"


def test_a_cluster_that_cannot_start_says_what_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ServerError, match=f"no redis-server .*{ENV_URL}"):
        start_best_cluster(tmp_path)
