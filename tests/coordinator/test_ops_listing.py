"""Listing many flows: the drivers' fast paths keep the contract.

ZooKeeper reads znodes in multiRead batches (256 per request, falling back
to one get each on servers older than 3.6) and lists runnable states from
the runnable markers only; both must give exactly what a plain scan gives,
in creation order, across batch boundaries and state changes.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.base import Backend
from flowbaton.backends.records import FlowDetail
from flowbaton.backends.states import HELD, PENDING, RUNNING, SUCCESS

COUNT = 600  # more than two multiRead batches
STATES = (PENDING, SUCCESS, RUNNING, HELD, SUCCESS)


def _fill(backend: Backend) -> list[FlowDetail]:
    flows = [FlowDetail(id=f"f{n:04d}", name="n", factory="tests.coord_flows:steps", state=STATES[n % 5],
                        created_at=1000.0 - n, updated_at=1000.0 - n) for n in range(COUNT)]
    for flow in flows:
        backend.create_flow(flow)
    return flows


def _ids(flows: list[FlowDetail]) -> list[str]:
    return [f.id for f in flows]


def _save_state(backend: Backend, flow: FlowDetail, state: str) -> None:
    token = backend.claim(flow.id, "op", 30.0)
    flow.state = state
    backend.save_flow(token, flow)
    backend.release(token)


def test_many_flows_list_in_creation_order_by_state(backend: Backend) -> None:
    flows = _fill(backend)
    assert _ids(backend.list_flows()) == _ids(flows)
    runnable = [f for f in flows if f.state in (PENDING, RUNNING)]
    assert _ids(backend.list_flows([PENDING, RUNNING])) == _ids(runnable)
    assert _ids(backend.list_flows([HELD])) == _ids([f for f in flows if f.state == HELD])

    _save_state(backend, flows[0], SUCCESS)  # leaves the runnable states
    _save_state(backend, flows[1], RUNNING)  # a finished flow retried
    listed = backend.list_flows([RUNNING, PENDING])
    assert flows[0].id not in _ids(listed) and flows[1].id in _ids(listed)
    assert _ids(listed) == sorted(_ids(listed))  # still oldest first


@pytest.fixture
def zk_url(zookeeper_server: Any) -> str:
    return str(zookeeper_server.url(namespace=f"l{uuid.uuid4().hex[:10]}"))


@pytest.mark.zookeeper
def test_zookeeper_without_multiread_reads_one_by_one(zk_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from kazoo.exceptions import UnimplementedError

    from flowbaton.backends.zookeeper import client as zk_client

    backend: Any = open_backend(zk_url)
    try:
        flows = _fill(backend)
        attempts: list[int] = []

        def old_server(kazoo: Any, paths: Any, *, children: bool = False) -> Any:  # what ZooKeeper 3.5 answers
            attempts.append(len(paths))
            result = kazoo.handler.async_result()
            result.set_exception(UnimplementedError())
            return result

        monkeypatch.setattr(zk_client, "send_multi_read", old_server)
        assert _ids(backend.list_flows()) == _ids(flows)
        assert _ids(backend.list_flows([PENDING])) == _ids([f for f in flows if f.state == PENDING])
        assert attempts and len(attempts) == -(-COUNT // 256)  # tried once, then never again
        assert backend.load_flow("f0007").state == STATES[2]
    finally:
        backend.close()


@pytest.mark.zookeeper
def test_zookeeper_batched_reads_report_missing_znodes(zk_url: str) -> None:
    backend: Any = open_backend(zk_url)
    try:
        _fill(backend)
        session = backend.session
        paths = [f"{backend.layout.flows}/{name}" for name in ("f0001", "nope", "f0002")]
        nodes = session.run("read", lambda again: session.get_many(paths))
        assert [n is not None for n in nodes] == [True, False, True]
        assert FlowDetail.from_json(nodes[2].data, "x").id == "f0002" and nodes[2].stat.czxid > 0
    finally:
        backend.close()
