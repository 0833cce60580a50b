"""Backend selection for every suite.

``backend_url`` runs a test once per backend (memory, sqlite, zookeeper,
redis), each in a fresh namespace; ``shared_backend_url`` only on the
backends several processes can share. ``FLOWBATON_TEST_BACKENDS=sqlite,redis``
narrows the set for a quick local run; CI runs them all, and a server that
cannot be started is an error, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.backends import backend_params
from tests.coordinator.inprocess import LocalReplicas

ALL_BACKENDS = ("memory", "sqlite", "zookeeper", "redis")
SHARED_BACKENDS = ("sqlite", "zookeeper", "redis")
#: what the contract suite, the failover tests and the chaos harness run on
#: besides: the Redis Cluster (the engine suite does not: it sees the same
#: driver as on one Redis, and the suite's time is better spent on the faults)
CLUSTER = "redis_cluster"

pytest_plugins = ["tests.servers.zookeeper", "tests.servers.redis"]

# CI replays the same generated inputs every run (a fuzz find must not fail
# an unrelated submission by chance); a developer's run draws new ones and
# keeps what failed in .hypothesis/ to replay it.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def make_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for ``kind`` in a namespace no other test uses."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'flows.db'}"
    server = request.getfixturevalue(kind if kind == CLUSTER else f"{kind}_server")
    namespace = f"t{uuid.uuid4().hex[:10]}"
    if kind == "zookeeper":  # with digest credentials, as a deployment should run
        with_credentials: str = server.url(namespace=namespace, credentials=True)
        return with_credentials
    url: str = server.url(namespace=namespace)
    return url


@pytest.fixture(params=backend_params(ALL_BACKENDS))
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, request, tmp_path)


@pytest.fixture(params=backend_params(SHARED_BACKENDS))
def shared_backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, request, tmp_path)


@pytest.fixture
def backend(backend_url: str) -> Iterator[object]:
    from flowbaton.backends import open_backend

    opened = open_backend(backend_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Iterator[object]:
    """A SQLite store of the test's own, for tests that need one real store, not every backend."""
    from flowbaton.backends import open_backend

    opened = open_backend(f"sqlite:///{tmp_path / 'flows.db'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def local_replicas() -> Iterator[LocalReplicas]:
    """In-process replicas, closed after the test."""
    made = LocalReplicas()
    try:
        yield made
    finally:
        made.close()
