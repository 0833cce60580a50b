"""wait_for_work on ZooKeeper: who wakes for what, and what a submit costs."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.zookeeper import ZooKeeperBackend
from tests.contract.helpers import LEASE, make_flow
from tests.servers.zookeeper import expire_session

pytestmark = pytest.mark.zookeeper


@pytest.fixture
def pair(zookeeper_server: Any, zookeeper_namespace: str) -> Iterator[tuple[ZooKeeperBackend, ZooKeeperBackend]]:
    """A worker that writes and a replica that waits, on separate sessions."""
    url = zookeeper_server.url(zookeeper_namespace)
    worker, idle = open_backend(url), open_backend(url)
    assert isinstance(worker, ZooKeeperBackend) and isinstance(idle, ZooKeeperBackend)
    yield worker, idle
    worker.close()
    idle.close()


def _waiting(backend: ZooKeeperBackend, timeout: float) -> tuple[threading.Thread, list[bool]]:
    woken: list[bool] = []
    thread = threading.Thread(target=lambda: woken.append(backend.wait_for_work(timeout)))
    thread.start()
    return thread, woken


def test_release_elsewhere_wakes_the_waiter(pair: tuple[ZooKeeperBackend, ZooKeeperBackend]) -> None:
    worker, idle = pair
    worker.create_flow(make_flow("f"))
    token = worker.claim("f", "w", LEASE)
    assert idle.find_runnable(10) == []
    thread, woken = _waiting(idle, 20)
    worker.release(token)
    thread.join(timeout=20)
    assert woken == [True]
    assert idle.find_runnable(10) == ["f"]


def test_a_new_claim_does_not_wake_the_waiter(pair: tuple[ZooKeeperBackend, ZooKeeperBackend]) -> None:
    worker, idle = pair
    worker.create_flow(make_flow("f"))
    assert idle.find_runnable(10) == ["f"]
    worker.claim("f", "w", LEASE)
    assert idle.wait_for_work(1.0) is False


def test_orphaned_claim_wakes_the_waiter(pair: tuple[ZooKeeperBackend, ZooKeeperBackend]) -> None:
    worker, idle = pair
    worker.create_flow(make_flow("f"))
    worker.claim("f", "w", LEASE)
    assert idle.find_runnable(10) == []
    thread, woken = _waiting(idle, 20)
    expire_session(worker)
    thread.join(timeout=20)
    assert woken == [True]
    assert idle.find_runnable(10) == ["f"]


def test_submit_is_one_request_whatever_is_stored(pair: tuple[ZooKeeperBackend, ZooKeeperBackend]) -> None:
    """create_flow is one multi, and costs the same with 300 flows stored."""
    worker, _ = pair
    counts = []
    for batch in range(2):
        for n in range(300 if batch else 1):
            worker.create_flow(make_flow(f"bulk-{batch}-{n}"))
        counts.append(_requests(worker, lambda b=batch: worker.create_flow(make_flow(f"probe-{b}"))))
    assert counts[0] == counts[1] == Counter({"commit": 1})


def _requests(backend: ZooKeeperBackend, action: Any) -> Counter[str]:
    """Count the requests ``action`` makes (each is one round trip)."""
    before = backend.requests
    action()
    return backend.requests - before


def test_fenced_writes_are_one_request_each(pair: tuple[ZooKeeperBackend, ZooKeeperBackend]) -> None:
    from tests.contract.helpers import make_task

    worker, _ = pair
    worker.create_flow(make_flow("f"))
    token = worker.claim("f", "w", LEASE)
    assert _requests(worker, lambda: worker.save_task(token, make_task("t"))) == Counter({"commit": 1})
    again = _requests(worker, lambda: worker.save_task(token, make_task("t", state="RUNNING")))
    assert again == Counter({"commit": 1})
    running = make_flow("f", state="RUNNING")
    assert _requests(worker, lambda: worker.save_flow(token, running)) == Counter({"commit": 1})
    assert _requests(worker, lambda: worker.renew(token, LEASE)) == Counter({"get_many": 1})
