"""The ZooKeeper creation index (``zookeeper/created.py``): an entry per
flow made and removed with it, emptied folders removed, pages read without
listing every flow, and stores from before the index indexed once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from flowbaton.backends import open_backend
from flowbaton.backends.errors import BadCursor
from flowbaton.backends.zookeeper import ZooKeeperBackend
from flowbaton.backends.zookeeper.created import CreationIndex
from tests.contract.helpers import LEASE, make_flow

pytestmark = pytest.mark.zookeeper

DAY = 86400.0


@pytest.fixture
def url(zookeeper_server: Any, zookeeper_namespace: str) -> str:
    result: str = zookeeper_server.url(zookeeper_namespace)
    return result


@pytest.fixture
def zk(url: str) -> Iterator[ZooKeeperBackend]:
    backend = open_backend(url)
    assert isinstance(backend, ZooKeeperBackend)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def raw(zookeeper_server: Any) -> Iterator[KazooClient]:
    client = KazooClient(hosts=zookeeper_server.hosts)
    client.start(timeout=20)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def _index(zk: ZooKeeperBackend) -> CreationIndex:
    return zk._created


def _flow(flow_id: str, created_at: float) -> Any:
    flow = make_flow(flow_id)
    flow.created_at = flow.updated_at = created_at
    return flow


def test_an_entry_lives_and_dies_with_its_flow(zk: ZooKeeperBackend, raw: KazooClient) -> None:
    index = _index(zk)
    zk.create_flow(_flow("old", 1_700_000_000.0))
    zk.create_flow(_flow("new", 1_700_000_000.0 + 2 * DAY))
    entry = index.entry("old", 1_700_000_000.0)
    assert raw.exists(entry) is not None and entry.startswith(f"{index.root}/20231114/")
    zk.delete_flow(zk.claim("old", "op", LEASE))
    assert raw.exists(entry) is None
    assert raw.exists(entry.rsplit("/", 2)[0]) is None  # its emptied day folder went too
    assert [f.id for f in zk.page_flows(None, None, 10)[0]] == ["new"]
    zk.create_flow(_flow("again", 1_700_000_000.0))  # into the day folder removed above
    assert [f.id for f in zk.page_flows(None, None, 10)[0]] == ["again", "new"]


def test_pages_walk_days_and_buckets_in_creation_order(zk: ZooKeeperBackend) -> None:
    stamps = [1_700_000_000.0 + offset for offset in (3 * DAY, 0.001, 5.0, 25.0, DAY, 0.0)]
    for number, stamp in enumerate(stamps):
        zk.create_flow(_flow(f"f{number}", stamp))
    order = [f"f{n}" for n in sorted(range(len(stamps)), key=lambda n: stamps[n])]
    seen, cursor = [], None
    for _ in range(10):
        page, cursor = zk.page_flows(None, cursor, 2)
        seen += [f.id for f in page]
        if cursor is None:
            break
    assert seen == order
    for bad in ("20231114/01700000000/x", "../../flows", "20231114/1700000000/1700000000000-a"):
        with pytest.raises(BadCursor):
            zk.page_flows(None, bad, 2)


def test_a_store_from_before_the_index_is_indexed_once(zk: ZooKeeperBackend, raw: KazooClient, url: str) -> None:
    for number in range(7):
        zk.create_flow(_flow(f"f{number}", 1_700_000_000.0 + number))
    index = _index(zk)
    raw.delete(index.root, recursive=True)  # as an older flowbaton left it: no index, no marker
    if raw.exists(index.marker):
        raw.delete(index.marker)
    with open_backend(url) as fresh:
        assert isinstance(fresh, ZooKeeperBackend)
        assert [f.id for f in fresh.page_flows(None, None, 100)[0]] == [f"f{n}" for n in range(7)]
        assert raw.exists(index.marker) is not None
        fresh.create_flow(_flow("later", 1_700_000_100.0))
        assert fresh.page_flows(None, None, 100)[0][-1].id == "later"
