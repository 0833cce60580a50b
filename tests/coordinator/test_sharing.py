"""Fair sharing: each flow has one home among the live replicas; others
take it only after the handoff wait. Pure computation on a memory backend
(the presence records) and a hand-driven clock, then three real in-process
replicas sharing a burst of flows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import ReplicaInfo
from flowbaton.coordinator.sharing import Sharing, home_of
from tests.coordinator.inprocess import LocalReplicas, submit_steps

REPLICAS = ["r1", "r2", "r3"]
FLOWS = [f"flow-{i:04d}" for i in range(300)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _fleet(*replica_ids: str) -> MemoryBackend:
    backend = MemoryBackend()
    for replica_id in replica_ids:
        backend.register_replica(ReplicaInfo(replica_id, "host", 1, 0.0, "1"), lease=60.0)
    return backend


def test_every_flow_has_exactly_one_home_and_homes_are_even() -> None:
    homes = Counter(home_of(flow_id, REPLICAS) for flow_id in FLOWS)
    assert set(homes) == set(REPLICAS)
    assert all(80 <= count <= 120 for count in homes.values()), homes
    assert home_of("f", ["b", "a"]) == home_of("f", ["a", "b"])  # the order of the list does not matter


def test_a_replica_leaving_moves_only_its_own_flows() -> None:
    before = {f: home_of(f, REPLICAS) for f in FLOWS}
    after = {f: home_of(f, ["r1", "r2"]) for f in FLOWS}
    moved = [f for f in FLOWS if before[f] != after[f]]
    assert moved and all(before[f] == "r3" for f in moved)


def test_a_replica_takes_its_own_flows_at_once_and_others_after_the_handoff() -> None:
    clock = Clock()
    sharing = Sharing(_fleet(*REPLICAS), "r1", handoff=0.5, refresh=1.0, clock=clock)
    ready, wait = sharing.claimable(FLOWS)
    own = [f for f in FLOWS if home_of(f, REPLICAS) == "r1"]
    assert ready == own and wait == 0.5
    clock.now += 0.2
    assert sharing.claimable(FLOWS)[0] == own  # still the others' turn
    clock.now += 0.3
    ready, wait = sharing.claimable(FLOWS)
    assert sorted(ready) == sorted(FLOWS) and ready[: len(own)] == own and wait is None


def test_the_wait_counts_from_when_the_flow_was_first_seen() -> None:
    clock = Clock()
    sharing = Sharing(_fleet(*REPLICAS), "r1", handoff=0.5, refresh=1.0, clock=clock)
    other = next(f for f in FLOWS if home_of(f, REPLICAS) != "r1")
    sharing.claimable([other])
    clock.now += 0.4
    newcomer = next(f for f in FLOWS[::-1] if home_of(f, REPLICAS) != "r1")
    ready, wait = sharing.claimable([other, newcomer])
    assert ready == [] and wait is not None and abs(wait - 0.1) < 1e-9
    sharing.claimable([])  # gone (taken by its home): forgotten
    ready, _ = sharing.claimable([other])
    assert ready == []  # seen anew


def test_a_dead_replicas_flows_go_home_to_the_live_ones_once_its_presence_lapses() -> None:
    clock = Clock()
    backend = _fleet("r1", "r2")
    sharing = Sharing(backend, "r1", handoff=60.0, refresh=1.0, clock=clock)
    backend.register_replica(ReplicaInfo("r3", "host", 1, 0.0, "1"), lease=60.0)
    assert sharing.claimable(FLOWS)[0] == [f for f in FLOWS if home_of(f, REPLICAS) == "r1"]
    backend.unregister_replica("r3")
    clock.now += 1.0  # the replica list is read again
    assert sharing.claimable(FLOWS)[0] == [f for f in FLOWS if home_of(f, ["r1", "r2"]) == "r1"]


def test_three_replicas_share_a_burst_of_flows(local_replicas: LocalReplicas, tmp_path: Path) -> None:
    """No replica hogs the board: with room for every flow on each of
    them, each runs about a third of a burst submitted at once (the
    ledger says who ran what)."""
    backend = MemoryBackend()
    replicas = [local_replicas.add(backend, replica_id=r) for r in REPLICAS]
    for replica in replicas:
        replica.start(concurrency=200)
    ledger = tmp_path / "ledger"
    ids = [submit_steps(replicas[0], ledger, n=1) for _ in range(150)]
    for flow_id in ids:
        assert replicas[0].wait(flow_id, timeout=60).state == "SUCCESS"
    ran = Counter(line.split()[4] for line in ledger.read_text().splitlines())
    assert set(ran) == set(REPLICAS), ran
    assert all(25 <= count <= 75 for count in ran.values()), ran


def test_a_slow_factory_does_not_hold_up_the_flows_claimed_with_it(local_replicas: LocalReplicas,
                                                                    tmp_path: Path) -> None:
    """A batch of claims is launched flow by flow, each built on its own
    thread: the fast flows of a takeover run while one factory is stuck."""
    backend = MemoryBackend()
    submitter = local_replicas.add(backend, replica_id="submitter")
    ledger, hold = tmp_path / "ledger", tmp_path / "hold"
    slow = submitter.submit("tests.coord_flows:slow_to_build", kwargs={"hold": str(hold)},
                            inputs={"ledger": str(ledger)})
    fast = [submit_steps(submitter, ledger, n=1) for _ in range(5)]
    hold.touch()  # from now on the slow factory blocks
    replica = local_replicas.add(backend, replica_id="r1")
    replica.start(concurrency=10)
    for flow_id in fast:
        assert replica.wait(flow_id, timeout=30).state == "SUCCESS"
    assert backend.load_flow(slow).state != "SUCCESS"  # still building
    hold.unlink()
    assert replica.wait(slow, timeout=30).state == "SUCCESS"
