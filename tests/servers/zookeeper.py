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
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowbaton.testing.servers import zookeeper as _servers
from flowbaton.testing.servers.zookeeper import (
    LocalZooKeeper,
    ZooKeeperEnsemble,
    expire_session,
    start_best_server,
)

from . import failing, until

wait_until = until  # the name the ZooKeeper tests use

__all__ = [
    "LocalZooKeeper",
    "ZooKeeperEnsemble",
    "expire_session",
    "start_best_server",
    "wait_until",
]


def _start_local(root: Path) -> LocalZooKeeper:
    with failing():
        return _servers.start_local(root)


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[Any]:
    """One server for the whole run; each test takes its own namespace via
    ``.url(namespace)``. Tests that kill or pause it must leave it running."""
    root = Path(tempfile.mkdtemp(prefix="flowbaton-zk-"))
    with failing():
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
        with failing():
            ensemble.start()
        yield ensemble
    finally:
        ensemble.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def zookeeper_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
