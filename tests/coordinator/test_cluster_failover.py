"""A Redis Cluster primary dies under running replicas: its replica is
promoted, the replicas follow the new slot map, and every flow finishes.

The replica processes see connection errors, then CLUSTERDOWN or a slot map
without the dead node's slots, until the cluster has promoted the replica
(``cluster-node-timeout`` 2 s in the fixture); the driver retries those as
transient. The test proves the outcome from the ledger and the store: every
flow finished, no replica died of it, every claim was released, and no task
finished twice by two claims of the same epoch (fencing compares the whole
token, so a failover that lost an epoch increment cannot let two owners write).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowbaton.backends.states import SUCCESS
from tests.servers.redis import AnyRedisCluster

from .cluster import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.fixture
def replicas(redis_cluster: AnyRedisCluster, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(redis_cluster.url(namespace=f"t{uuid.uuid4().hex[:10]}"), tmp_path)
    try:
        yield made
    finally:
        made.close()
        redis_cluster.heal()  # the session's cluster: three primaries and their replicas again
        print(made.logs())


def test_a_primary_failover_under_running_flows(redis_cluster: AnyRedisCluster, replicas: Cluster) -> None:
    replicas.spawn("r1", lease=3.0)
    replicas.spawn("r2", lease=3.0)
    replicas.wait_registered("r1", "r2")
    flows = [replicas.submit(n=6, pause=0.3) for _ in range(8)]  # over several shards, so several primaries
    for flow_id in flows[:2]:
        replicas.wait_runs(flow_id, 2)

    old = redis_cluster.kill_primary(0)
    promoted = redis_cluster.wait_failover(old)
    assert promoted != old

    replicas.wait_done(*flows, timeout=60.0)
    assert all(replicas.state(flow_id) == SUCCESS for flow_id in flows)
    assert all(replica.alive() for replica in replicas.replicas.values()), "a replica died of the failover"
    for flow_id in flows:
        tasks = replicas.backend.load_tasks(flow_id)
        assert set(tasks) == {f"s{i}" for i in range(6)}
        assert all(detail.state == SUCCESS for detail in tasks.values())
    executions: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    for run in replicas.runs():
        executions[(run.flow, run.task, run.epoch)].add(run.replica)
    assert all(len(owners) == 1 for owners in executions.values()), executions
    assert not {claim.flow_id for claim in replicas.backend.list_claims()} & set(flows), "a claim outlived its flow"
