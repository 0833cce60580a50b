"""The checker catches what it claims to catch: each invariant, fed a
history with one planted violation, reports it (and a clean history passes).

Histories are built by a small scripted "world" instead of a real run, so
each case is exact and instant; the real runs are in test_ci.py.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from flowbaton.backends.records import FlowDetail, TaskDetail
from flowbaton.testing.chaos.checks import check_all
from flowbaton.testing.chaos.evidence import Evidence, Execution, Index, Op
from flowbaton.testing.chaos.recovery import check_orphans, check_recovery
from flowbaton.testing.recorder import digest, result_digest

LEASE = 2.0


@dataclass
class World:
    """A scripted history of one or more flows: claims, writes, reads, runs."""

    backend: str = "zookeeper"
    now: float = 100.0
    ops: list[Op] = field(default_factory=list)
    runs: list[Execution] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    records: dict[tuple[str, str], str] = field(default_factory=dict)  # what the store holds: digests
    texts: dict[str, FlowDetail] = field(default_factory=dict)
    details: dict[str, TaskDetail] = field(default_factory=dict)  # digest -> the detail written
    ids: Any = field(default_factory=lambda: itertools.count())
    builds: dict[str, str] = field(default_factory=dict)  # replica id -> its build
    lives: dict[str, list[float | None]] = field(default_factory=dict)  # replica id -> [started, ended]

    def tick(self, seconds: float = 0.01) -> float:
        self.now += seconds
        return self.now

    def _op(self, kind: str, flow: str, **fields: Any) -> Op:
        start = self.tick()
        op = Op(str(next(self.ids)), kind, flow, start, self.tick(), "ok", **fields)
        self.ops.append(op)
        return op

    def create(self, flow: str, build: str | None = None) -> None:
        record = FlowDetail(flow, "chaos", "m:f", created_at=self.now)
        self._op("create_flow", flow, digest=digest(record.to_json()), state="PENDING", build=build)
        self.records[(flow, "")] = digest(record.to_json())
        self.texts[flow] = record

    def claim(self, flow: str, replica: str, epoch: int) -> str:
        claim = f"{replica}#{epoch:04d}"
        self._op("claim", flow, claim=claim, epoch=epoch, owner=replica)
        return claim

    def save_task(self, flow: str, claim: str, task: str, state: str, attempt: int = 1, *,
                  result: Any = None, outcome: str = "ok", lands: bool = True) -> Op:
        epoch = int(claim.rsplit("#", 1)[1])
        detail = TaskDetail(task, state, result, attempts=attempt, claim_id=claim, epoch=epoch,
                            started_at=self.tick())
        self.details[digest(detail.to_json())] = detail
        op = self._op("save_task", flow, claim=claim, epoch=epoch, task=task, state=state, attempts=attempt,
                      digest=digest(detail.to_json()), result=result_digest(result))
        op.outcome, op.err = outcome, (None if outcome == "ok" else "ClaimLost")
        if lands:
            self.records[(flow, task)] = op.digest or ""
        return op

    def save_flow(self, flow: str, claim: str, state: str) -> None:
        record = self.texts[flow]
        record.state, record.updated_at = state, self.tick()
        d = digest(record.to_json())
        self._op("save_flow", flow, claim=claim, epoch=int(claim[-4:]), state=state, digest=d)
        self.records[(flow, "")] = d

    def release(self, flow: str, claim: str) -> None:
        self._op("release", flow, claim=claim, epoch=int(claim[-4:]))

    def renew(self, flow: str, claim: str) -> None:
        self._op("renew", flow, claim=claim, epoch=int(claim[-4:]))

    def read_tasks(self, flow: str) -> None:
        tasks = {t: d for (f, t), d in self.records.items() if f == flow and t}
        self._op("load_tasks", flow, tasks=tasks)

    def run(self, flow: str, task: str, replica: str, epoch: int, attempt: int = 1, end: str = "end") -> None:
        self.runs.append(Execution(flow, task, attempt, epoch, replica, self.tick(), end))

    def task_run(self, flow: str, claim: str, task: str, attempt: int = 1, result: Any = "ok") -> None:
        """RUNNING accepted, the execution, SUCCESS accepted: a task done right."""
        replica, epoch = claim.rsplit("#", 1)
        self.save_task(flow, claim, task, "RUNNING", attempt)
        self.run(flow, task, replica, int(epoch), attempt)
        self.save_task(flow, claim, task, "SUCCESS", attempt, result=result)

    def outage(self, index: int, seconds: float) -> None:
        """A backend fault (lose-quorum) that starts now and lasts ``seconds``."""
        self.faults.append({"index": index, "kind": "lose-quorum", "target": None, "replica": None,
                            "start": self.tick(), "heal": self.tick(seconds)})

    def evidence(self) -> Evidence:
        """The history so far, and the store as the script left it."""
        tasks = {flow: {t: self.details[d] for (f, t), d in self.records.items() if f == flow and t}
                 for flow in self.texts}
        flows: dict[str, FlowDetail | None] = dict(self.texts)
        return Evidence(self.ops, self.runs, self.faults, flows, tasks, dict.fromkeys(self.texts, "user"),
                        LEASE, self.backend, self.tick(), builds=self.builds, lives=self.lives)


def violations(world: World) -> dict[int, list[str]]:
    ix = Index.build(world.evidence())
    outcomes = check_all(ix)
    recovery, _ = check_recovery(ix, slack=5.0)
    check_orphans(ix, 5.0, recovery)
    outcomes.append(recovery)
    return {o.number: o.examples for o in outcomes if o.violations}


def clean_flow(world: World, flow: str = "f1") -> str:
    world.create(flow)
    claim = world.claim(flow, "r1-1", 1)
    world.read_tasks(flow)
    world.save_flow(flow, claim, "RUNNING")
    world.task_run(flow, claim, "a")
    return claim


def test_a_clean_history_passes() -> None:
    world = World()
    claim = clean_flow(world)
    world.task_run("f1", claim, "b")
    world.save_flow("f1", claim, "SUCCESS")
    world.release("f1", claim)
    assert violations(world) == {}


def test_1_a_flow_left_running_is_stranded() -> None:
    world = World()
    clean_flow(world)
    assert "ended RUNNING" in violations(world)[1][0]


def test_2_a_write_acknowledged_after_a_newer_claim() -> None:
    world = World()
    old = clean_flow(world)
    world.tick(LEASE)
    new = world.claim("f1", "r2-1", 2)
    world.read_tasks("f1")
    world.save_task("f1", old, "b", "RUNNING")  # the zombie's write goes through: fencing is broken
    world.task_run("f1", new, "b")
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    found = violations(world)
    assert "acknowledged" in found[2][0]


def test_2_a_refused_stale_write_is_counted_not_blamed() -> None:
    world = World()
    old = clean_flow(world)
    world.tick(LEASE)
    new = world.claim("f1", "r2-1", 2)
    world.read_tasks("f1")
    world.save_task("f1", old, "b", "RUNNING", outcome="fail", lands=False)
    world.task_run("f1", new, "b")
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    assert 2 not in violations(world)
    ix = Index.build(world.evidence())
    assert check_all(ix)[1].counts["stale save_task refused"] == 1


def test_2_an_epoch_that_goes_backwards() -> None:
    world = World()
    clean_flow(world)
    world.tick(LEASE)
    new = world.claim("f1", "r2-1", 1)  # epoch reused outside any Redis failover
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    assert any("epoch 1 granted after epoch 1" in e for e in violations(world)[2])


def test_2_a_task_started_after_its_owners_lease_ran_out() -> None:
    world = World()
    claim = clean_flow(world)
    world.renew("f1", claim)
    world.tick(LEASE + 0.5)  # no renewal for longer than the lease, then a start
    world.task_run("f1", claim, "b")
    world.save_flow("f1", claim, "SUCCESS")
    world.release("f1", claim)
    assert "after its lease ran out" in violations(world)[2][0]


def test_3_a_task_run_again_after_its_success_was_stored() -> None:
    world = World()
    clean_flow(world)  # "a" succeeded under epoch 1
    world.tick(LEASE)
    new = world.claim("f1", "r2-1", 2)
    world.run("f1", "a", "r2-1", 2, attempt=2)
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    assert "then attempt 2 started" in violations(world)[3][0]


def test_4_a_success_result_rewritten() -> None:
    world = World()
    claim = clean_flow(world)
    world.save_task("f1", claim, "a", "SUCCESS", result="another")
    world.save_flow("f1", claim, "SUCCESS")
    world.release("f1", claim)
    assert "rewritten" in violations(world)[4][0]


def test_5_an_acknowledged_write_missing_from_a_later_read() -> None:
    world = World()
    old = clean_flow(world)
    world.save_task("f1", old, "b", "RUNNING")
    world.records.pop(("f1", "b"))  # the store forgot it
    world.tick(LEASE)
    new = world.claim("f1", "r2-1", 2)
    world.read_tasks("f1")
    world.task_run("f1", new, "b")
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    assert "showed nothing" in violations(world)[5][0]


def test_5_a_lost_write_is_allowed_and_counted_after_a_redis_failover() -> None:
    world = World(backend="redis")
    old = clean_flow(world)
    world.save_task("f1", old, "b", "RUNNING")
    world.records.pop(("f1", "b"))
    world.faults.append({"index": 0, "kind": "failover", "target": None, "replica": None,
                         "start": world.tick(), "heal": world.tick(1.0)})
    new = world.claim("f1", "r2-1", 2)
    world.read_tasks("f1")
    world.task_run("f1", new, "b")
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    assert violations(world) == {}


def _lost_then_resumed_without(world: World, drops_task: bool) -> None:
    """"b" succeeds, a Redis failover loses that write, and a replica resumes
    the flow on code whose flow has no "b" any more (``drops_task``) or still has it."""
    old = clean_flow(world)
    world.save_task("f1", old, "b", "SUCCESS", result=2)
    world.faults.append({"index": 0, "kind": "failover", "target": None, "replica": None,
                         "start": world.tick(), "heal": world.tick(1.0)})
    world.records.pop(("f1", "b"))
    new = world.claim("f1", "r2-1", 2)
    world.read_tasks("f1")
    world.texts["f1"].meta = {"tasks": ["a"] if drops_task else ["a", "b"]}
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)


def test_5_a_lost_write_of_a_task_the_newer_code_dropped_is_counted() -> None:
    world = World(backend="redis")
    _lost_then_resumed_without(world, drops_task=True)
    assert 5 not in violations(world)
    outcome = check_all(Index.build(world.evidence()))[4]
    assert outcome.counts["lost with a task the newer code's flow no longer has"] >= 1


def test_5_a_lost_write_of_a_task_the_flow_still_has_must_be_redone() -> None:
    world = World(backend="redis")
    _lost_then_resumed_without(world, drops_task=False)
    assert "not redone" in violations(world)[5][0]


def test_6_a_task_run_twice_by_the_same_owner() -> None:
    world = World()
    claim = clean_flow(world)
    world.run("f1", "a", "r1-1", 1)  # the same token starts "a" again, no failure, no takeover
    world.save_flow("f1", claim, "SUCCESS")
    world.release("f1", claim)
    assert "ran it twice" in violations(world)[6][0]


def test_6_a_rerun_by_the_same_owner_after_a_redis_failover_lost_its_claim_is_counted() -> None:
    world = World(backend="redis")
    clean_flow(world)  # "a" succeeded under r1-1 epoch 1
    world.faults.append({"index": 0, "kind": "failover", "target": None, "replica": None,
                         "start": world.tick(), "heal": world.tick(1.0)})
    world.records.pop(("f1", "a"))  # the failover lost the claim, its epoch and "a"'s records
    again = world.claim("f1", "r1-1", 1)  # the same replica claims again under the same epoch
    world.read_tasks("f1")
    world.task_run("f1", again, "a")
    world.save_flow("f1", again, "SUCCESS")
    world.release("f1", again)
    assert 6 not in violations(world)
    outcome = check_all(Index.build(world.evidence()))[5]
    assert outcome.counts["cause: failover (same replica, epoch reused)"] == 1


def test_6_a_rerun_by_the_same_owner_after_a_regrant_without_a_failover_is_blamed() -> None:
    world = World(backend="redis")
    clean_flow(world)
    again = world.claim("f1", "r1-1", 1)  # no fault: an epoch reused is itself wrong
    world.task_run("f1", again, "a")
    world.save_flow("f1", again, "SUCCESS")
    world.release("f1", again)
    assert "ran it twice" in violations(world)[6][0]


def test_6_an_in_doubt_rerun_after_a_kill_is_counted() -> None:
    world = World()
    old = clean_flow(world)
    world.save_task("f1", old, "b", "RUNNING")
    world.run("f1", "b", "r1-1", 1, end=None)  # killed mid-task
    world.faults.append({"index": 0, "kind": "kill", "target": "r1", "replica": "r1-1",
                         "start": world.tick(), "heal": world.tick(0.5)})
    world.tick(LEASE)
    new = world.claim("f1", "r2-1", 2)
    world.read_tasks("f1")
    world.task_run("f1", new, "b", attempt=2)
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    assert violations(world) == {}
    outcome = check_all(Index.build(world.evidence()))[5]
    assert outcome.counts["duplicates"] == 1 and outcome.counts["cause: kill"] == 1


def _takeover_by(world: World, replica: str, epoch: int, task: str) -> None:
    """``replica`` takes ``f1`` over after a lease and finishes it with ``task``."""
    world.tick(LEASE)
    claim = world.claim("f1", replica, epoch)
    world.read_tasks("f1")
    world.task_run("f1", claim, task)
    world.save_flow("f1", claim, "SUCCESS")
    world.release("f1", claim)


def _build_outcome(world: World) -> Any:
    return next(o for o in check_all(Index.build(world.evidence())) if o.number == 8)


def test_8_a_flow_resumed_on_an_older_build() -> None:
    world = World(builds={"r1-1": "1.2", "r2-1": "1.10"})
    clean_flow(world)  # "a" ran on 1.2
    world.builds["r1-1"] = "1.10"  # first run on the newer build...
    world.builds["r2-1"] = "1.2"  # ...then the takeover on the older one
    _takeover_by(world, "r2-1", 2, "b")
    assert "task b attempt 1 by r2-1@2 ran on build 1.2 after task a" in violations(world)[8][0]


def test_8_an_upgrade_mid_flow_passes_and_is_counted() -> None:
    world = World(builds={"r1-1": "1.9", "r2-1": "1.10"})  # 1.10 is newer than 1.9 (PEP 440)
    clean_flow(world)
    _takeover_by(world, "r2-1", 2, "b")
    assert violations(world) == {}
    assert _build_outcome(world).counts["flows that met more than one build"] == 1


def test_8_a_flow_submitted_by_newer_code_run_by_an_older_replica() -> None:
    world = World(builds={"r1-1": "1.0"})
    world.create("f1", build="1.1")
    claim = world.claim("f1", "r1-1", 1)
    world.task_run("f1", claim, "a")
    world.save_flow("f1", claim, "SUCCESS")
    world.release("f1", claim)
    assert "ran on build 1.0 after submitted on build 1.1" in violations(world)[8][0]


def test_8_an_older_build_after_a_redis_failover_lost_the_flows_build_is_counted() -> None:
    world = World(backend="redis", builds={"r1-1": "2.0", "r2-1": "1.0"})
    clean_flow(world)
    world.faults.append({"index": 0, "kind": "failover", "target": None, "replica": None,
                         "start": world.tick(), "heal": world.tick(1.0)})
    _takeover_by(world, "r2-1", 2, "b")
    assert 8 not in violations(world)
    outcome = _build_outcome(world)
    assert outcome.counts["ran on an older build after a Redis failover lost the flow's build"] == 1


def test_8_declines_are_counted_by_reason() -> None:
    world = World(builds={"r1-1": "1.0"})
    clean_flow(world)
    world._op("decline", "f1", owner="r2-1", reason="flow last ran on build 1.1; this replica runs 1.0 (...)")
    world._op("decline", "f1", owner="r2-1", reason="factory m:f not found")
    assert _build_outcome(world).counts == {"declines: build too old": 1, "declines: other": 1}


def test_7_a_claim_kept_but_not_served_orphans_the_flow() -> None:
    world = World()
    old = clean_flow(world)
    world.renew("f1", old)  # still alive, then the owner stops serving the flow without releasing it
    world.tick(30.0)
    new = world.claim("f1", "r1-1", 2)
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    assert "no live owner for 30" in violations(world)[7][0]


@pytest.mark.parametrize("newer_replica_running", [False, True])
def test_7_waiting_for_a_replica_new_enough_is_not_orphan_time(newer_replica_running: bool) -> None:
    """A rolling deploy left one replica on the flow's build (r2-1, 1.1);
    it is killed, the old one (r1-1, 1.0) must decline, and the flow waits
    for r2-2 to start: that wait is not blamed. If another replica new
    enough ran all along (r3-1), the same wait is."""
    world = World(builds={"r1-1": "1.0", "r2-1": "1.1", "r2-2": "1.1", "r3-1": "1.1"})
    world.lives = {"r1-1": [0.0, None], "r2-1": [0.0, None]}
    if newer_replica_running:
        world.lives["r3-1"] = [0.0, None]
    world.create("f1", build="1.1")
    old = world.claim("f1", "r2-1", 1)
    world.task_run("f1", old, "a")
    world.lives["r2-1"][1] = world.tick()  # killed
    world.tick(30.0)
    world.lives["r2-2"] = [world.tick(), None]  # its slot restarts on 1.1
    new = world.claim("f1", "r2-2", 2)
    world.task_run("f1", new, "b")
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    found = violations(world).get(7, [])
    if newer_replica_running:
        assert any("no live owner for 30" in e for e in found), found
    else:
        assert found == []
        recovery, _ = check_recovery(Index.build(world.evidence()), slack=5.0)
        orphans_counted = check_orphans(Index.build(world.evidence()), 5.0, recovery)
        assert orphans_counted[0]["waited_for_build"] > 29


@pytest.mark.parametrize("outage", [True, False])
def test_7_backend_outages_do_not_count_as_orphan_time(outage: bool) -> None:
    world = World()
    clean_flow(world)
    if outage:
        world.outage(0, 29.0)
    else:
        world.tick(29.0)
    world.tick(1.0)
    new = world.claim("f1", "r2-1", 2)
    world.save_flow("f1", new, "SUCCESS")
    world.release("f1", new)
    assert (7 in violations(world)) is not outage


@pytest.mark.parametrize("second_fault", [True, False])
def test_7_a_later_outage_inside_a_recovery_does_not_count(second_fault: bool) -> None:
    """A flow struck by fault 0 that could only move on after fault 1 (which
    took the servers again before it recovered) is judged without either
    outage; without fault 1 the same 10 s of standing still is a violation."""
    world = World()
    claim = clean_flow(world)
    world.outage(0, 5.0)
    world.tick(3.0)
    if second_fault:
        world.outage(1, 6.0)
    else:
        world.tick(6.0)
    world.tick(1.0)
    world.task_run("f1", claim, "b")
    world.save_flow("f1", claim, "SUCCESS")
    world.release("f1", claim)
    found = violations(world)
    assert (7 in found) is not second_fault
    if not second_fault:
        assert "stood still 15.0s after the fault (backend outages meanwhile 5.0s)" in found[7][0]
