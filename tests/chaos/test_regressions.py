"""Bugs the chaos harness found, each replayed by its seed (see
docs/chaos-bugs.md, and docs/chaos.md for how to replay any run)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import ClaimToken, TaskDetail
from flowbaton.backends.states import RUNNING
from flowbaton.coordinator.lease import LeasedGate
from flowbaton.engine import Claim, new_flow_detail, run_flow
from flowbaton.testing.chaos import ChaosConfig
from flowbaton.testing.chaos.run import WORKLOAD
from flowbaton.testing.ledger import ENV as LEDGER_ENV
from flowbaton.testing.ledger import read_ledger
from flowbaton.testing.servers.redis import SentinelCluster

from .conftest import run_and_show, violations


@pytest.mark.slow
@pytest.mark.zookeeper
def test_bug1_claim_given_up_is_released(chaos_folder: Path) -> None:
    """Bug 1: a replica that self-fenced (its renewals stalled while the
    ZooKeeper quorum was gone) stopped running its flows but never released
    their claims; its session survived the outage, so the claims did too and
    the flows were stranded until that replica died. Before the fix this run
    left flows without a live owner (invariant 7) or never finished them (1)."""
    config = ChaosConfig(backend="zookeeper", flows=40, replicas=2, seed=5, duration=10.0, lease=2.0,
                         faults=["lose-quorum"], folder=chaos_folder, drain_timeout=30.0)
    report = run_and_show(config)
    assert report["run"]["fault_kinds"] == ["lose-quorum"]
    assert violations(report) == {}
    assert any(item["affected"] for item in report["recovery"]["per_fault"]), "the fault must strike flows mid-run"


def test_bug2_no_task_starts_after_the_lease_ran_out_during_its_start(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    """Bug 2, exactly: the RUNNING record of ``b`` is written while the lease
    is valid, but the write takes so long (a busy SQLite, retries) that the
    lease deadline has passed when it returns. Before the fix the runner
    started ``b`` anyway, while the next owner, free to claim the flow, ran it
    too. Now nothing starts: the record stays in doubt for the next owner."""
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path))
    backend = MemoryBackend()
    detail = new_flow_detail(WORKLOAD, kwargs={"seed": 2, "index": 0, "kind": "plain", "work": 0.01})
    backend.create_flow(detail)
    token = backend.claim(detail.id, "r1", lease=60.0)
    now = [0.0]
    gate = LeasedGate(clock=lambda: now[0])
    gate.deadline = 10.0
    save_tasks = backend.save_tasks

    def slow_save_tasks(token: ClaimToken, tasks: list[TaskDetail]) -> None:
        save_tasks(token, tasks)
        if any(task.state == RUNNING and task.task_id != "prepare" for task in tasks):
            now[0] = 20.0  # the write returned after the lease deadline

    # A start travels alone (save_task) or with the previous result (save_tasks).
    monkeypatch.setattr(backend, "save_tasks", slow_save_tasks)
    monkeypatch.setattr(backend, "save_task", lambda token, task: slow_save_tasks(token, [task]))
    run_flow(backend, Claim(token, gate, time.monotonic()), replica_id="r1", allow=["flowbaton.testing."])
    started = [entry["task"] for entry in read_ledger(tmp_path) if entry["phase"] == "start"]
    assert started == ["prepare"]
    assert gate.lost
    in_doubt = [t for t, d in backend.load_tasks(detail.id).items() if d.state == RUNNING]
    assert len(in_doubt) == 1  # written, never started: the next owner runs it


@pytest.mark.soak
def test_bug2_by_seed(chaos_folder: Path) -> None:
    """Bug 2 as the harness found it: a flaky task fails while SQLite's write
    lock is held elsewhere; its retry's RUNNING write waits out the stall and
    returns after the lease; the retry then ran beside the next owner's run
    (invariant 2: "started ... after its lease ran out"). With the soak runs
    (33 s): the default suite keeps the exact reproduction above."""
    config = ChaosConfig(backend="sqlite", flows=80, replicas=3, seed=31, duration=25.0, lease=2.0,
                         faults=["stall-backend"], mix=(0.0, 1.0, 0.0), folder=chaos_folder, drain_timeout=30.0)
    report = run_and_show(config)
    assert violations(report) == {}
    assert report["invariants"]["6"]["counts"].get("cause: stall-backend", 0) > 0, "stalls must hit running tasks"


@pytest.mark.redis
def test_bug3_redis_warns_when_a_split_brain_can_lose_submitted_flows(redis_sentinel_cluster: SentinelCluster) -> None:
    """Bug 3: with ``min-replicas-to-write 0`` (the default), a primary
    restarted slower than Sentinel's down-after comes back as a second
    master; writes it acknowledges until Sentinel demotes it are dropped,
    and the soak run (seed 370868) lost 14 submitted flows that way. The
    backend warns about settings that lose claims (eviction, persistence);
    it should warn about this one too (deploy/README.md recommends
    ``min-replicas-to-write 1``)."""
    backend = open_backend(redis_sentinel_cluster.url(namespace="bug3"))
    try:
        assert any("min-replicas-to-write" in warning for warning in backend.warnings())
    finally:
        backend.close()
