"""The replica in one process on ``memory://``: claim loop, slots, declines,
corrupt records, graceful stop. Real engine, real flows; conditions are
awaited with deadlines."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flowbaton.backends.base import Backend
from flowbaton.backends.errors import BackendUnavailable, FlowNotFound
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import ClaimToken
from flowbaton.backends.states import HELD, PENDING, SUCCESS
from flowbaton.coordinator import Coordinator, connect
from flowbaton.coordinator.claimloop import ClaimLoop
from flowbaton.coordinator.lease import LeasedGate
from flowbaton.coordinator.skiplist import SkipList
from flowbaton.engine import Claim, FlowReport, Gate, load_report
from flowbaton.engine.counting import Prepared
from flowbaton.engine.errors import FactoryError
from tests.coordinator.cluster import read_runs
from tests.coordinator.inprocess import LocalReplicas, submit_steps
from tests.servers import until


@pytest.fixture
def store() -> MemoryBackend:
    return MemoryBackend()


class Blocking:
    """A stand-in for run_flow that holds each flow until its gate stops."""

    def __init__(self) -> None:
        self.gates: dict[str, Gate] = {}
        self.lock = threading.Lock()

    def __call__(self, backend: Any, claim: Claim[Gate], /, **_: Any) -> FlowReport:
        gate = claim.gate
        with self.lock:
            self.gates[claim.flow_id] = gate
        while not (gate.stopped or gate.lost):
            gate.wait(0.05)
        return load_report(backend, claim.flow_id)


def test_submitted_flows_run_to_success(
    store: MemoryBackend, local_replicas: LocalReplicas, tmp_path: Path
) -> None:
    coord = local_replicas.add(store).start(concurrency=2)
    ids = [submit_steps(coord, tmp_path / "ledger") for _ in range(5)]
    reports = [coord.wait(fid, timeout=10) for fid in ids]
    assert [r.state for r in reports] == [SUCCESS] * 5
    assert store.list_claims() == []
    lines = (tmp_path / "ledger").read_text().splitlines()
    assert len(lines) == 15 and all(line.endswith(coord.replica_id) for line in lines)


def test_presence_is_registered_and_removed_on_stop(store: MemoryBackend, local_replicas: LocalReplicas) -> None:
    coord = local_replicas.add(store, replica_id="r-presence").start()
    [info] = store.list_replicas()
    assert (info.replica_id, info.allow) == ("r-presence", ["tests."])
    coord.stop()
    assert store.list_replicas() == []


def test_concurrency_bounds_the_flows_run_at_once(
    store: MemoryBackend, local_replicas: LocalReplicas, tmp_path: Path
) -> None:
    runner = Blocking()
    coord = local_replicas.add(store, run_flow=runner).start(concurrency=2)
    ids = [submit_steps(coord, tmp_path / "l") for _ in range(5)]
    until(lambda: len(runner.gates) == 2, what="two flows running")
    rounds: list[str] = []
    tick = coord.observer.health.tick
    coord.observer.health.tick = lambda loop: (rounds.append(loop), tick(loop))  # type: ignore[method-assign]
    until(lambda: rounds.count("claims") >= 3, what="three more rounds of the claim loop")  # still only two
    assert len(coord.running()) == 2 and len(store.list_claims()) == 2
    assert set(runner.gates) <= set(ids)


def test_graceful_stop_releases_claims_at_once(
    store: MemoryBackend, local_replicas: LocalReplicas, tmp_path: Path
) -> None:
    runner = Blocking()
    coord = local_replicas.add(store, run_flow=runner, lease=30.0).start(concurrency=3)
    for _ in range(3):
        submit_steps(coord, tmp_path / "l")
    until(lambda: len(store.list_claims()) == 3, what="three claims")
    coord.stop()
    assert store.list_claims() == []  # not 30 s later: now
    assert all(g.stopped and not g.lost for g in runner.gates.values())


def test_two_replicas_share_the_work(
    store: MemoryBackend, local_replicas: LocalReplicas, tmp_path: Path
) -> None:
    a = local_replicas.add(store, replica_id="a").start(concurrency=2)
    b = local_replicas.add(store, replica_id="b").start(concurrency=2)
    ids = [submit_steps(a, tmp_path / "ledger", n=2, pause=0.05) for _ in range(12)]
    assert all(a.wait(fid, timeout=20).state == SUCCESS for fid in ids)
    owners = {run.replica for run in read_runs(tmp_path / "ledger")}
    assert owners == {"a", "b"}
    assert b.running() == set()


def test_a_flow_not_allowed_here_is_declined_and_left_pending(
    store: MemoryBackend, local_replicas: LocalReplicas, tmp_path: Path
) -> None:
    coord = local_replicas.add(store, replica_id="picky", allow=["elsewhere."]).start()
    fid = submit_steps(coord, tmp_path / "l")
    until(lambda: store.load_declines(fid), what="a decline")
    [decline] = store.load_declines(fid)
    assert decline.replica_id == "picky" and "FactoryNotAllowed" in decline.reason
    assert "elsewhere." in decline.reason
    assert store.load_flow(fid).state == PENDING and store.current_claim(fid) is None
    assert coord.skips.skipped(fid)
    # a replica that may run it does so
    other = local_replicas.add(store, replica_id="able").start()
    assert other.wait(fid, timeout=10).state == SUCCESS


def test_a_corrupt_flow_is_skipped_and_others_still_run(
    store: MemoryBackend, local_replicas: LocalReplicas, tmp_path: Path
) -> None:
    coord = local_replicas.add(store)
    bad = submit_steps(coord, tmp_path / "l")
    store.overwrite_record(bad, '{"id": "' + bad + '", "state": "PENDING"}')  # fields missing
    coord.start()
    good = submit_steps(coord, tmp_path / "l")
    assert coord.wait(good, timeout=10).state == SUCCESS
    until(lambda: coord.skips.skipped(bad), what="the corrupt flow skipped")
    assert "corrupt" in coord.skips.reasons()[bad]
    assert store.current_claim(bad) is None


def test_an_unexpected_runner_error_costs_one_flow_not_the_replica(
    store: MemoryBackend, local_replicas: LocalReplicas, tmp_path: Path
) -> None:
    calls: list[str] = []

    def explode(backend: Any, claim: Claim[Gate], /, **_: Any) -> FlowReport:
        calls.append(claim.flow_id)
        raise ZeroDivisionError("bug")

    coord = local_replicas.add(store, run_flow=explode).start()
    ids = [submit_steps(coord, tmp_path / "l") for _ in range(3)]
    until(lambda: all(coord.skips.skipped(f) for f in ids), what="all three tried")
    assert sorted(calls) == sorted(ids) and store.list_claims() == []


def test_connect_hands_the_backend_it_opens_to_wrap_backend() -> None:
    opened: list[Backend] = []
    wrapped = MemoryBackend()

    def wrap(backend: Backend) -> Backend:
        opened.append(backend)
        return wrapped

    with connect("memory://", allow=["tests."], wrap_backend=wrap) as coord:
        assert coord.backend is wrapped and len(opened) == 1 and opened[0] is not wrapped
    given = MemoryBackend()
    with connect(given, wrap_backend=wrap) as coord:  # the caller's own object: the caller wraps it
        assert coord.backend is given and len(opened) == 1


def test_a_replica_refuses_to_start_without_an_allow_list(store: MemoryBackend) -> None:
    with pytest.raises(FactoryError, match="allow="):
        Coordinator(store).start()
    assert store.list_replicas() == []


def test_wait_times_out_and_reports_held_flows(
    store: MemoryBackend, local_replicas: LocalReplicas, tmp_path: Path
) -> None:
    coord = local_replicas.add(store)
    fid = submit_steps(coord, tmp_path / "l")
    with pytest.raises(TimeoutError, match=fid):
        coord.wait(fid, timeout=0.1)
    token = store.claim(fid, "op", 5.0)
    flow = store.load_flow(fid)
    flow.state, flow.reason = HELD, "operator says no"
    store.save_flow(token, flow)
    assert coord.wait(fid, timeout=1).reason == "operator says no"
    with pytest.raises(FlowNotFound):
        coord.wait("nope", timeout=1)


def test_poll_once_skips_flows_claimed_elsewhere(store: MemoryBackend, tmp_path: Path) -> None:
    coord = Coordinator(store, allow=["tests."])
    ids = [submit_steps(coord, tmp_path / "l") for _ in range(4)]
    store.claim(ids[0], "someone", 10.0)
    launched: list[str] = []

    def launch(claim: Claim[LeasedGate], prepared: Prepared | None) -> bool:
        launched.append(claim.flow_id)
        return True

    loop = ClaimLoop(store, "me", 2.0, skips=SkipList(), free_slots=lambda: 10, running=set,
                     launch=launch, poll_interval=0.1)
    assert loop.poll_once() == 3
    assert sorted(launched) == sorted(ids[1:])
    assert loop.poll_once() == 0  # all claimed now


def test_an_idle_replica_polls_once_per_interval(store: MemoryBackend, local_replicas: LocalReplicas) -> None:
    calls = []
    original = store.find_runnable

    def counting(limit: int) -> list[str]:
        calls.append(time.monotonic())
        return original(limit)

    store.find_runnable = counting  # type: ignore[method-assign]
    coord = local_replicas.add(store, poll_interval=0.1).start()
    time.sleep(1.0)
    coord.stop()
    assert 5 <= len(calls) <= 14


def test_a_replica_started_again_after_a_stop_renews_its_claims(
    store: MemoryBackend, local_replicas: LocalReplicas, tmp_path: Path
) -> None:
    """Each step takes longer than the lease: the flow finishes under its
    first claim only if the restarted replica renews it (its lease keeper
    once stayed stopped after a restart, so the claim ran out mid-flow)."""
    coord = local_replicas.add(store, lease=0.6).start()
    coord.stop()
    coord.start()
    fid = submit_steps(coord, tmp_path / "ledger", n=2, pause=1.0)
    assert coord.wait(fid, timeout=20).state == SUCCESS
    assert {d.epoch for d in store.load_tasks(fid).values()} == {1}


class _FlakyRelease(MemoryBackend):
    """``release`` is refused as unavailable ``failures`` times, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    def release(self, token: ClaimToken) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise BackendUnavailable("release refused: quorum lost")
        super().release(token)


def test_a_release_the_backend_cannot_take_now_is_retried(local_replicas: LocalReplicas, tmp_path: Path) -> None:
    """On ZooKeeper a claim outlives an outage with the session, so a release
    given up during it would strand the flow (docs/chaos-bugs.md #4)."""
    store = _FlakyRelease(failures=2)
    coord = local_replicas.add(store).start()
    fid = submit_steps(coord, tmp_path / "ledger", n=1)
    assert coord.wait(fid, timeout=20).state == SUCCESS
    until(lambda: store.list_claims() == [], what="the claim released on the third try")
    assert store.attempts == 3


def test_a_release_is_given_up_after_the_patience(
    local_replicas: LocalReplicas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FlakyRelease(failures=1_000_000)
    coord = local_replicas.add(store)
    coord.settings = dataclasses.replace(coord.settings, release_patience=0.5)
    coord.start()
    fid = submit_steps(coord, tmp_path / "ledger", n=1)
    assert coord.wait(fid, timeout=20).state == SUCCESS
    until(lambda: "release failed, the lease will expire" in caplog.text, what="the release given up")
    assert 2 <= store.attempts <= 5  # waits of 0.2 s, 0.4 s ... within 0.5 s


def test_a_stop_past_its_timeout_cancels_async_task_calls(store: MemoryBackend, local_replicas: LocalReplicas) -> None:
    """Threads cannot be stopped; coroutines can: an async task still
    running when the stop timeout ends is cancelled, never recorded as
    finished (in doubt for the next owner), and once it has unwound the
    claim is released, so the next owner need not wait for the lease."""
    from tests import async_flows as af

    af.reset()
    coord = local_replicas.add(store).start()
    flow_id = coord.submit("tests.async_flows:waiting", kwargs={"seconds": 60.0})
    assert af.PROBE.started.wait(10), "the async task never started"
    assert coord.stop(timeout=0.3) is False  # given up on: the task did not finish in time
    until(lambda: af.PROBE.seen("unwound"), what="the async task unwound")
    assert af.PROBE.seen("cancelled") == [("waits", 1)]
    until(lambda: not store.list_claims(), what="the claim released after the call unwound")
    assert store.load_tasks(flow_id)["waits"].state == "RUNNING"
