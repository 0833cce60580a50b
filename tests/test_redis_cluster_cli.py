"""The ops CLI on a Redis Cluster: ``check`` and ``replicas`` tell the
truth about settings that make a failover lose claims, and a URL that
contradicts the namespace's stored layout is refused in one line."""

from __future__ import annotations

import uuid

import pytest

from tests.coordinator.ops_helpers import bad_input, run_cli
from tests.servers.redis import AnyRedisCluster

pytestmark = pytest.mark.redis


def namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def test_check_names_each_primary_that_may_lose_claims_in_a_failover(
    redis_cluster: AnyRedisCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """The session cluster runs with ``min-replicas-to-write 0``, as a
    cluster does by default: every primary is named."""
    out = run_cli(capsys, redis_cluster.url(namespace=namespace()), "check")
    assert out.code == 1, out
    problems = [line for line in out.stdout.splitlines() if "min-replicas-to-write is 0" in line]
    named = {node for node in redis_cluster.primaries() for line in problems if f"node {node}:" in line}
    assert named == set(redis_cluster.primaries()) and len(problems) == len(named), out.stdout


def test_replicas_shows_the_same_warnings(redis_cluster: AnyRedisCluster,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, redis_cluster.url(namespace=namespace()), "replicas")
    assert out.code == 0, out
    assert "min-replicas-to-write is 0" in out.stdout + out.stderr


def test_a_cluster_url_asking_for_the_classic_layout_is_refused(
    redis_cluster: AnyRedisCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_cli(capsys, redis_cluster.url(namespace=namespace(), shards=0), "flows")
    assert bad_input(out), out
    assert "option 'shards'" in out.stderr and "cross slots" in out.stderr


def test_a_url_contradicting_the_stored_shard_count_is_refused_and_changes_nothing(
    redis_cluster: AnyRedisCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    name = namespace()
    assert run_cli(capsys, redis_cluster.url(namespace=name, shards=8), "flows").code == 0
    out = run_cli(capsys, redis_cluster.url(namespace=name, shards=4), "flows")
    assert bad_input(out), out
    assert "option 'shards': 4" in out.stderr and "has 8" in out.stderr
    with redis_cluster.client() as client:
        assert client.get(f"{name}:index:{{{name}}}:layout") == b'{"shards": 8}'
