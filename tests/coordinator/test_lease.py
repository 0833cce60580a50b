"""LeaseKeeper and LeasedGate with an injected clock: renewals, self-fencing,
session events. No thread, no sleep: each test calls ``beat()`` itself."""

from __future__ import annotations

import time

import pytest

from flowbaton.backends import CONNECTED, LOST, SUSPENDED
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import FlowDetail, ReplicaInfo
from flowbaton.coordinator.lease import LeasedGate, LeaseKeeper, default_margin
from flowbaton.engine import Claim

from .fakes import FakeClock, StubBackend, unavailable

LEASE = 3.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> StubBackend:
    store = StubBackend(clock)
    store.create_flow(FlowDetail(id="f1", name="f1", factory="m:f"))
    return store


def keep(backend: StubBackend, clock: FakeClock) -> tuple[LeaseKeeper, LeasedGate, object]:
    keeper = LeaseKeeper(backend, "r1", LEASE, clock=clock)
    gate = LeasedGate(clock)
    token = backend.claim("f1", "r1", LEASE)
    keeper.track(Claim(token, gate, clock()))
    return keeper, gate, token


def test_beats_keep_the_claim_alive_past_its_lease(backend: StubBackend, clock: FakeClock) -> None:
    keeper, gate, _ = keep(backend, clock)
    for _ in range(10):
        clock.advance(LEASE / 3)
        keeper.beat()
    assert backend.current_claim("f1") is not None
    assert gate.may_start()


def test_a_claim_taken_by_force_loses_the_gate_on_the_next_beat(backend: StubBackend, clock: FakeClock) -> None:
    keeper, gate, _ = keep(backend, clock)
    backend.claim("f1", "operator", LEASE, force=True)
    keeper.beat()
    assert gate.lost and "claim lost" in (gate.lost_reason or "")
    assert not gate.may_start()


def test_a_late_renewal_reply_self_fences(backend: StubBackend, clock: FakeClock) -> None:
    keeper, gate, _ = keep(backend, clock)
    backend.renew_delay = LEASE - default_margin(LEASE) + 0.01
    keeper.beat()
    assert gate.lost and "too late" in (gate.lost_reason or "")


def test_a_reply_just_in_time_keeps_the_gate_open(backend: StubBackend, clock: FakeClock) -> None:
    keeper, gate, _ = keep(backend, clock)
    backend.renew_delay = LEASE - default_margin(LEASE) - 0.01
    keeper.beat()
    assert not gate.lost


def test_the_gate_closes_itself_when_no_renewal_came(backend: StubBackend, clock: FakeClock) -> None:
    # The heartbeat thread may be starved or the process was stopped: the
    # runner's own question must already get "no".
    _, gate, _ = keep(backend, clock)
    clock.advance(LEASE - default_margin(LEASE) - 0.01)
    assert gate.may_start()
    clock.advance(0.02)
    assert not gate.may_start() and gate.lost


def test_unavailable_backend_fences_only_once_the_deadline_passed(backend: StubBackend, clock: FakeClock) -> None:
    keeper, gate, _ = keep(backend, clock)
    backend.renew_error = unavailable
    clock.advance(LEASE / 3)
    keeper.beat()
    assert not gate.lost
    clock.advance(LEASE)
    keeper.beat()
    assert gate.lost and backend.renewals == 1  # no renewal sent past the deadline


def test_untracked_claims_are_not_renewed(backend: StubBackend, clock: FakeClock) -> None:
    keeper, _, _ = keep(backend, clock)
    keeper.untrack("f1")
    keeper.beat()
    assert backend.renewals == 0


def test_session_suspended_pauses_and_connected_resumes_after_verifying(backend: StubBackend, clock: FakeClock) -> None:
    keeper, gate, _ = keep(backend, clock)
    backend.emit(SUSPENDED)
    assert gate.paused and not gate.may_start()
    keeper.beat()  # still suspended: renewal alone does not resume
    assert gate.paused
    backend.emit(CONNECTED)
    assert gate.paused  # not before the claim is verified
    keeper.beat()
    assert not gate.paused and gate.may_start()


def test_reconnected_but_claim_gone_loses_the_gate(backend: StubBackend, clock: FakeClock) -> None:
    keeper, gate, _ = keep(backend, clock)
    backend.emit(SUSPENDED)
    backend.claim("f1", "other", LEASE, force=True)
    backend.emit(CONNECTED)
    keeper.beat()
    assert gate.lost and gate.paused


def test_session_lost_loses_every_gate(backend: StubBackend, clock: FakeClock) -> None:
    _, gate, _ = keep(backend, clock)
    backend.emit(LOST)
    assert gate.lost and "session lost" in (gate.lost_reason or "")


def test_presence_is_heartbeaten(clock: FakeClock) -> None:
    store = MemoryBackend(clock=clock)
    keeper = LeaseKeeper(store, "r1", LEASE, clock=clock, presence=ReplicaInfo("r1", "h", 1, 0.0, "0"))
    keeper.register()
    for _ in range(5):
        clock.advance(LEASE / 3)
        keeper.beat()
    assert [r.replica_id for r in store.list_replicas()] == ["r1"]


def test_an_expired_presence_is_announced_again(clock: FakeClock) -> None:
    # e.g. the process was stopped past its lease, or the session was lost
    store = MemoryBackend(clock=clock)
    keeper = LeaseKeeper(store, "r1", LEASE, clock=clock, presence=ReplicaInfo("r1", "h", 1, 0.0, "0"))
    keeper.register()
    clock.advance(LEASE * 2)
    assert store.list_replicas() == []
    keeper.beat()
    assert [r.replica_id for r in store.list_replicas()] == ["r1"]


def test_the_thread_renews_on_its_own() -> None:
    store = MemoryBackend()
    store.create_flow(FlowDetail(id="f1", name="f1", factory="m:f"))
    lease = 0.6
    keeper = LeaseKeeper(store, "r1", lease)
    gate = LeasedGate()
    keeper.track(Claim(store.claim("f1", "r1", lease), gate, time.monotonic()))
    keeper.start()
    try:
        end = time.monotonic() + 3 * lease
        while time.monotonic() < end:
            assert store.current_claim("f1") is not None and gate.may_start()
            time.sleep(0.05)
    finally:
        keeper.stop()
