"""Redis driver behind Sentinel: the primary dies mid-use, a replica is
promoted, and the same backend object carries on within its retry deadline."""

from __future__ import annotations

import time

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.states import RUNNING, SUCCESS
from tests.contract.helpers import DEADLINE, LEASE, make_flow, make_task, woken_by
from tests.servers.redis import SentinelCluster

pytestmark = [pytest.mark.redis, pytest.mark.slow]

RETRY_DEADLINE = 30.0


def test_failover_mid_use(redis_sentinel_cluster: SentinelCluster) -> None:
    cluster = redis_sentinel_cluster
    backend = open_backend(
        cluster.url(namespace="s", retry_deadline=RETRY_DEADLINE),
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
    )
    try:
        # The test cluster is bare on purpose: the only warning is the split-brain one.
        assert [w for w in backend.warnings() if "min-replicas-to-write" not in w] == []
        backend.create_flow(make_flow("f"))
        token = backend.claim("f", "r1", LEASE)
        backend.save_task(token, make_task("a", state=SUCCESS, result=1))
        backend.save_task(token, make_task("b", state=RUNNING))
        cluster.wait_replicated()

        old = cluster.kill_primary()
        started = time.monotonic()
        # No waiting for the failover here: the driver's retries must ride it out.
        backend.renew(token, LEASE)
        backend.save_task(token, make_task("b", state=SUCCESS, result=2))
        elapsed = time.monotonic() - started
        assert elapsed < RETRY_DEADLINE
        assert cluster.wait_for_failover(old, deadline=5) != old

        tasks = backend.load_tasks("f")
        assert (tasks["a"].result, tasks["b"].result) == (1, 2)
        backend.save_flow(token, make_flow("f", state=SUCCESS))
        backend.release(token)
        backend.create_flow(make_flow("g"))
        assert backend.find_runnable(10) == ["g"]
        assert [w for w in backend.warnings() if "min-replicas-to-write" not in w] == []
    finally:
        backend.close()


def test_wait_for_work_behind_sentinel_survives_a_failover(redis_sentinel_cluster: SentinelCluster) -> None:
    """The subscription goes to the primary Sentinel names; when that one
    dies, a later wait subscribes to the promoted replica."""
    cluster = redis_sentinel_cluster
    url = cluster.url(namespace="w", retry_deadline=RETRY_DEADLINE)
    waiting = open_backend(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    submitting = open_backend(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        woken, took = woken_by(waiting, lambda n: submitting.create_flow(make_flow(f"a{n}")), timeout=30)
        assert woken and took < DEADLINE
        cluster.wait_for_failover(cluster.kill_primary(), deadline=RETRY_DEADLINE)
        woken, took = woken_by(waiting, lambda n: submitting.create_flow(make_flow(f"b{n}")), timeout=30)
        assert woken and took < RETRY_DEADLINE
    finally:
        waiting.close()
        submitting.close()
