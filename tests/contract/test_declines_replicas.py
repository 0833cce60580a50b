"""Contract: declines (why a replica refuses a flow) and replica presence."""

from __future__ import annotations

import time

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.errors import FlowNotFound
from flowbaton.backends.records import Decline, ReplicaInfo

from .faults import lose_presence
from .helpers import LEASE, SHORT_LEASE, make_flow, second_backend, wait_past


def _replica(replica_id: str, **fields: object) -> ReplicaInfo:
    info = ReplicaInfo(replica_id, host="host-1", pid=1234, started_at=1700000000.0,
                       version="1.2.3", allow=["pkg.", "other."])
    for name, value in fields.items():
        setattr(info, name, value)
    return info


def test_declines_latest_wins_per_replica(backend: Backend) -> None:
    backend.create_flow(make_flow("f"))
    assert backend.load_declines("f") == []
    backend.record_decline("f", Decline("r1", "factory not importable", 1.0))
    backend.record_decline("f", Decline("r2", "not allowed: evil.", 2.0))
    backend.record_decline("f", Decline("r1", "fingerprint refused ✓", 3.0))
    found = {d.replica_id: d for d in backend.load_declines("f")}
    assert found == {"r1": Decline("r1", "fingerprint refused ✓", 3.0),
                     "r2": Decline("r2", "not allowed: evil.", 2.0)}


def test_declines_belong_to_their_flow(backend: Backend) -> None:
    for flow_id in ("f", "f2"):
        backend.create_flow(make_flow(flow_id))
    backend.record_decline("f", Decline("r1", "why", 1.0))
    assert backend.load_declines("f2") == []


def test_declines_of_missing_flow(backend: Backend) -> None:
    with pytest.raises(FlowNotFound):
        backend.record_decline("nope", Decline("r1", "why", 1.0))
    with pytest.raises(FlowNotFound):
        backend.load_declines("nope")


def test_declines_do_not_touch_claims_or_state(backend: Backend) -> None:
    backend.create_flow(make_flow("f"))
    token = backend.claim("f", "r1", LEASE)
    backend.record_decline("f", Decline("r2", "why", 1.0))
    backend.save_flow(token, make_flow("f", state="RUNNING"))
    assert backend.load_flow("f").state == "RUNNING"


def test_register_list_unregister(backend: Backend) -> None:
    before = time.time()
    backend.register_replica(_replica("r1"), LEASE)
    backend.register_replica(_replica("r2", host="host-2"), LEASE)
    found = {r.replica_id: r for r in backend.list_replicas()}
    assert set(found) == {"r1", "r2"}
    r1 = found["r1"]
    assert (r1.host, r1.pid, r1.version, r1.allow) == ("host-1", 1234, "1.2.3", ["pkg.", "other."])
    assert r1.seen_at >= before - 5
    backend.unregister_replica("r1")
    assert [r.replica_id for r in backend.list_replicas()] == ["r2"]
    backend.unregister_replica("r1")  # twice is fine


def test_register_again_replaces(backend: Backend) -> None:
    backend.register_replica(_replica("r1", version="1.0"), LEASE)
    backend.register_replica(_replica("r1", version="2.0"), LEASE)
    assert [r.version for r in backend.list_replicas()] == ["2.0"]


def test_replica_expires_without_heartbeat(backend_url: str, backend: Backend) -> None:
    # "stays" lives in another client: on session backends presence dies
    # with the whole session of the client that registered it.
    with second_backend(backend_url, backend) as other:
        other.register_replica(_replica("stays"), LEASE)
        backend.register_replica(_replica("gone"), SHORT_LEASE)
        lose_presence(backend, "gone")
        assert [r.replica_id for r in other.list_replicas()] == ["stays"]


def test_heartbeat_keeps_replica_alive(backend: Backend) -> None:
    backend.register_replica(_replica("r1"), SHORT_LEASE)
    backend.heartbeat_replica("r1", LEASE)
    wait_past(time.time() + 2 * SHORT_LEASE)
    assert [r.replica_id for r in backend.list_replicas()] == ["r1"]


def test_heartbeat_of_unknown_replica_is_harmless(backend: Backend) -> None:
    backend.heartbeat_replica("never-registered", LEASE)
    assert backend.list_replicas() == []
