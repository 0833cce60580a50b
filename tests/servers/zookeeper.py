"""ZooKeeper fixtures for the test suites, over ``flowbaton.testing.servers``.

The servers themselves (local ``QuorumPeerMain`` processes, the 3-node
ensemble, containers, an external server named by ``FLOWBATON_TEST_ZOOKEEPER``)
and their fault injectors live in ``flowbaton/testing/servers/zookeeper.py``,
shared with the chaos harness and the benchmarks. Here: the pytest fixtures,
which turn a server that cannot be started into a failed test (never a skip:
a CI run without ZooKeeper must not look green), and ``wait_until``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flowbaton.testing.servers import ServerError
from flowbaton.testing.servers import zookeeper as _servers
from flowbaton.testing.servers.zookeeper import (
    ENV_VAR,
    LOG_JAR,
    START_DEADLINE,
    ZK_JAR,
    ContainerZooKeeper,
    ExternalZooKeeper,
    LocalZooKeeper,
    ZooKeeperEnsemble,
    expire_session,
    start_best_server,
)

__all__ = [
    "ENV_VAR",
    "LOG_JAR",
    "START_DEADLINE",
    "ZK_JAR",
    "ContainerZooKeeper",
    "ExternalZooKeeper",
    "LocalZooKeeper",
    "ZooKeeperEnsemble",
    "expire_session",
    "start_best_server",
    "wait_until",
]

_T = TypeVar("_T")


def wait_until(predicate: Callable[[], _T], timeout: float, what: str, interval: float = 0.05) -> _T:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


@contextmanager
def _failing() -> Iterator[None]:
    """A server that cannot be started fails the test, with the reason."""
    try:
        yield
    except ServerError as err:
        pytest.fail(str(err))


def _start_local(root: Path) -> LocalZooKeeper:
    with _failing():
        return _servers.start_local(root)


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[Any]:
    """One server for the whole run; each test takes its own namespace via
    ``.url(namespace)``. Tests that kill or pause it must leave it running."""
    root = Path(tempfile.mkdtemp(prefix="flowbaton-zk-"))
    with _failing():
        server = start_best_server(root)
    try:
        yield server
    finally:
        if hasattr(server, "shutdown"):
            server.shutdown()
        elif isinstance(server, LocalZooKeeper):
            server.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def zookeeper_private_server(tmp_path: Path) -> Iterator[LocalZooKeeper]:
    """A local standalone server of this test alone, free to kill and restart."""
    server = _start_local(tmp_path)
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def zookeeper_ensemble() -> Iterator[ZooKeeperEnsemble]:
    """Three local members in one quorum, for quorum-loss tests."""
    root = Path(tempfile.mkdtemp(prefix="flowbaton-zk3-"))
    ensemble = ZooKeeperEnsemble(root)
    try:
        with _failing():
            ensemble.start()
        yield ensemble
    finally:
        ensemble.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def zookeeper_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
