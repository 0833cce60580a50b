"""Restart in place: a replica restarted under the same id takes its dead
predecessor's claims over at once, and only when it can prove it dead.

Three layers: the proof as a pure function on forged and odd records (with
a fake process table), the takeover on every backend with presence records
planted the way a dead process leaves them, and real replica processes
(SIGKILL: resumed far below the lease; SIGSTOP: alive, left alone).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.errors import CorruptRecord
from flowbaton.backends.records import ClaimInfo, ReplicaInfo, dumps
from flowbaton.coordinator.identity import process_start, replica_info, start_ticks
from flowbaton.coordinator.restart import Sighting, look_up, prove_dead, restart_in_place
from tests.contract.helpers import LEASE, make_flow, second_backend
from tests.servers import until

from .cluster import Cluster, Replica, env
from .test_failover import stop_outside_a_write

# ------------------------------------------------------------- /proc parsing

STAT_TAIL = " ".join(["S", *map(str, range(4, 22)), "4242", "999", "888"])  # fields 3 .. 24, starttime 4242


@pytest.mark.parametrize("comm", ["python", "a b", "a) b", "(x) (y)", ") S 1 2 3", ""])
def test_start_ticks_counts_fields_after_the_last_parenthesis(comm: str) -> None:
    assert start_ticks(f"1234 ({comm}) {STAT_TAIL}\n") == 4242


@pytest.mark.parametrize("line", ["", "1234 python S 1 2", "1234 (python) S 1 2 3", "1 (p) " + STAT_TAIL.replace(
    "4242", "4x42"), "1 (p) " + STAT_TAIL.replace("4242", "-1"), "1 (p) " + STAT_TAIL.replace("4242", "٤٢")])
def test_start_ticks_of_something_else_is_none(line: str) -> None:
    assert start_ticks(line) is None


def test_own_process_start_is_what_look_up_sees() -> None:
    mine = process_start("self")
    assert mine is not None and mine > 0
    assert look_up(os.getpid()) == Sighting(running=True, start_ticks=mine)


def test_a_reaped_child_is_not_running() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert look_up(child.pid) == Sighting(running=False)


# ---------------------------------------------------------------- the proof

HERE = ReplicaInfo("X", "host-a", pid=77, started_at=1.8e9, version="1", boot_id="boot-1",
                   pid_namespace="pid:[4026531836]", process_start=5000)
PREVIOUS = dataclasses.replace(HERE, pid=1234, started_at=1.7e9, process_start=900)


class Table:
    """A fake process table: pid -> start ticks (None: unreadable); records
    which pids were looked up."""

    def __init__(self, running: dict[int, int | None] | None = None) -> None:
        self.running = running or {}
        self.asked: list[int] = []

    def __call__(self, pid: int) -> Sighting:
        self.asked.append(pid)
        if pid not in self.running:
            return Sighting(running=False)
        return Sighting(running=True, start_ticks=self.running[pid])


def test_a_gone_pid_is_proof() -> None:
    verdict = prove_dead(PREVIOUS, HERE, Table())
    assert verdict.dead
    assert "previous incarnation pid 1234 started at 2023-11-14T22:13:20+00:00 (tick 900) is gone" in verdict.why


def test_a_reused_pid_is_told_apart_by_its_start_time() -> None:
    # A restarted container: our own first process is pid 1 again, as was the dead one's.
    previous = dataclasses.replace(PREVIOUS, pid=1, process_start=30)
    here = dataclasses.replace(HERE, pid=1, process_start=9000)
    verdict = prove_dead(previous, here, Table({1: 9000}))
    assert verdict.dead and "pid 1 is another process now, started at tick 9000" in verdict.why


def test_a_pid_running_since_the_recorded_start_is_no_proof() -> None:
    verdict = prove_dead(PREVIOUS, HERE, Table({1234: 900}))  # SIGSTOPped, or hung: alive
    assert not verdict.dead and "still runs" in verdict.why


def test_a_running_pid_whose_start_cannot_be_read_is_no_proof() -> None:
    verdict = prove_dead(PREVIOUS, HERE, Table({1234: None}))  # another user's, /proc hidden
    assert not verdict.dead and "cannot be read" in verdict.why


@pytest.mark.parametrize(("change", "expected"), [
    ({"host": "host-b"}, "the record names host 'host-b', this is 'host-a'"),
    ({"boot_id": "boot-0"}, "another boot ('boot-0', this is 'boot-1')"),
    ({"pid_namespace": "pid:[4026532001]"}, "another pid namespace"),
    ({"boot_id": None}, "the record has no boot_id"),
    ({"pid_namespace": None}, "the record has no pid_namespace"),
    ({"process_start": None}, "the record has no process start time"),
    ({"pid": 0}, "pid 0 is no process id"),
    ({"pid": -1}, "pid -1 is no process id"),  # os.kill(-1, 0) would ask about every process
    ({"pid": 2**40}, "is no process id"),
    ({"pid": 77, "process_start": 5000}, "this very process"),
])
def test_no_proof_from_an_odd_record(change: dict[str, object], expected: str) -> None:
    table = Table()  # every pid gone: only the record can stop the proof
    verdict = prove_dead(dataclasses.replace(PREVIOUS, **change), HERE, table)  # type: ignore[arg-type]
    assert not verdict.dead and expected in verdict.why
    assert table.asked == []  # decided without looking at any process


@pytest.mark.parametrize("missing", ["boot_id", "pid_namespace"])
def test_no_proof_where_this_system_does_not_tell(missing: str) -> None:
    verdict = prove_dead(PREVIOUS, dataclasses.replace(HERE, **{missing: None}), Table())
    assert not verdict.dead and "this system does not tell" in verdict.why


def test_no_record_is_no_proof() -> None:
    assert not prove_dead(None, HERE, Table()).dead


def test_a_hostile_host_name_is_quoted_and_cut_in_the_reason() -> None:
    verdict = prove_dead(dataclasses.replace(PREVIOUS, host="h\n" + "x" * 5000), HERE, Table())
    assert not verdict.dead and "\n" not in verdict.why and len(verdict.why) < 300


# ------------------------------------------------------------- the record


def test_an_older_record_without_the_new_fields_loads() -> None:
    old = {"replica_id": "X", "host": "h", "pid": 1, "started_at": 1.0, "version": "0.1", "allow": []}
    info = ReplicaInfo.from_json(json.dumps(old), "replica 'X'")
    assert (info.boot_id, info.pid_namespace, info.process_start) == (None, None, None)
    assert not prove_dead(info, HERE, Table()).dead


def test_the_new_fields_round_trip() -> None:
    assert ReplicaInfo.from_json(PREVIOUS.to_json(), "here") == PREVIOUS


@pytest.mark.parametrize(("name", "value", "kind"), [
    ("boot_id", 5, "a string"),
    ("pid_namespace", ["pid:[1]"], "a string"),
    ("process_start", "900", "a non-negative integer"),
    ("process_start", 9.5, "a non-negative integer"),
    ("process_start", True, "a non-negative integer"),
    ("process_start", -1, "a non-negative integer"),
])
def test_a_bad_new_field_is_a_corrupt_record_naming_it(name: str, value: object, kind: str) -> None:
    data = {**json.loads(PREVIOUS.to_json()), name: value}
    with pytest.raises(CorruptRecord, match=f"field '{name}' must be {kind}") as caught:
        ReplicaInfo.from_json(dumps(data), "replica 'X' in the store")
    assert "replica 'X' in the store" in str(caught.value)


# ------------------------------------------------- the takeover, every backend


def planted(replica_id: str, pid: int, process_start: int | None) -> ReplicaInfo:
    """The presence record a process of this host, boot and pid namespace
    would have left: this process's facts with another pid and start."""
    return dataclasses.replace(replica_info(replica_id, None), pid=pid, process_start=process_start)


@pytest.fixture
def other(backend_url: str, backend: Backend) -> Iterator[Backend]:
    """A second client: the dead incarnation's (on ZooKeeper its session
    owns the claims' ephemeral nodes, as a crashed process's would)."""
    with second_backend(backend_url, backend) as made:
        yield made


def test_releases_the_dead_incarnations_claims_and_no_one_elses(backend: Backend, other: Backend) -> None:
    for flow_id in ("f1", "f2", "f3"):
        backend.create_flow(make_flow(flow_id))
    dead = [other.claim("f1", "X", LEASE), other.claim("f2", "X", LEASE)]
    alive = other.claim("f3", "Y", LEASE)
    other.register_replica(planted("X", pid=1234, process_start=900), LEASE)

    released = restart_in_place(backend, "X", look=Table())
    assert sorted(released) == ["f1", "f2"]
    assert backend.current_claim("f1") is None and backend.current_claim("f2") is None
    still = backend.current_claim("f3")
    assert still is not None and (still.claim_id, still.epoch) == (alive.claim_id, alive.epoch)
    assert backend.claim("f1", "X", LEASE).epoch > dead[0].epoch  # the usual claim, a newer epoch


def test_an_alive_predecessor_keeps_its_claims(backend: Backend, other: Backend) -> None:
    backend.create_flow(make_flow("f1"))
    held = other.claim("f1", "X", LEASE)
    other.register_replica(planted("X", pid=1234, process_start=900), LEASE)

    assert restart_in_place(backend, "X", look=Table({1234: 900})) == []
    claim = backend.current_claim("f1")
    assert claim is not None and (claim.claim_id, claim.epoch) == (held.claim_id, held.epoch)


class StaleListing:
    """A backend whose claim listing is one round trip old: the claims it
    lists were current when read, not when released."""

    def __init__(self, backend: Backend, listed: list[ClaimInfo]) -> None:
        self._backend, self._listed = backend, listed

    def list_claims(self) -> list[ClaimInfo]:
        return self._listed

    def __getattr__(self, name: str) -> object:
        return getattr(self._backend, name)


def test_a_claim_taken_by_another_replica_meanwhile_is_left_alone(backend: Backend, other: Backend) -> None:
    backend.create_flow(make_flow("f1"))
    backend.create_flow(make_flow("f2"))
    mine = other.claim("f1", "X", LEASE)
    other.register_replica(planted("X", pid=1234, process_start=900), LEASE)
    listed = backend.list_claims()
    # Its lease ran out and Y claimed the flow between our listing and our release:
    taken = other.claim("f1", "Y", LEASE, force=True)
    # A claim record that names us as owner over Y's claim id is not ours either:
    forged = ClaimInfo("f2", "X", other.claim("f2", "Y", LEASE).claim_id, 99, 1.0, None)

    stale = StaleListing(backend, [*listed, forged])
    assert restart_in_place(stale, "X", look=Table()) == []  # type: ignore[arg-type]
    for flow_id, owner in (("f1", taken.claim_id), ("f2", forged.claim_id)):
        claim = backend.current_claim(flow_id)
        assert claim is not None and claim.claim_id == owner
    assert mine.epoch < taken.epoch


# ------------------------------------------------------ real replica processes

LONG_LEASE = 30.0  # the claims' lease: what restart in place must beat by far
# Resume within this after the restart. Honest on a loaded 2-core CI machine:
# it covers starting Python, importing flowbaton, connecting, a handful of
# backend calls and building the flow (about a second when idle; a few
# seconds when every core is busy), while the earliest a lease could free
# the claim is 20 s after the kill (the last renewal came at most
# LONG_LEASE / 3 before it; ZooKeeper's session, 30 s). The log line checked
# beside it says which of the two happened.
RESUME_DEADLINE = 10.0
STOPPED_LEASE = 60.0  # the test ZooKeeper's maxSessionTimeout


def incarnation(cluster: Cluster, key: str, lease: float, replica_id: str = "X") -> Replica:
    """A ``flowbaton replica --replica-id replica_id`` process, known to the
    cluster (its log, its cleanup) as ``key``: several incarnations of one
    replica id each keep their own."""
    cmd = [sys.executable, "-m", "flowbaton", "--backend", cluster.url, "replica", "--allow", "tests.",
           "--lease", str(lease), "--replica-id", replica_id, "--concurrency", "2"]
    return cluster._launch(key, cmd, env())


def registered_pid(cluster: Cluster, replica_id: str) -> int | None:
    found = [r.pid for r in cluster.backend.list_replicas() if r.replica_id == replica_id]
    return found[0] if found else None


def running_flow(cluster: Cluster, lease: float) -> tuple[str, ClaimInfo]:
    """A flow of slow steps, once its second step runs under replica X."""
    first = incarnation(cluster, "X.1", lease)
    until(lambda: registered_pid(cluster, "X") == first.proc.pid, 20, f"X.1 to register\n{cluster.logs()}")
    flow_id = cluster.submit(n=4, pause=2.0)
    cluster.wait_runs(flow_id, 2)  # s0 done, s1 running
    claim = cluster.backend.current_claim(flow_id)
    assert claim is not None and claim.owner == "X"
    return flow_id, claim


@pytest.mark.slow
def test_a_replica_restarted_after_kill_9_resumes_at_once(cluster: Cluster) -> None:
    flow_id, claim = running_flow(cluster, LONG_LEASE)
    first = cluster.replicas["X.1"]
    first.signal(signal.SIGKILL)
    first.proc.wait()  # reaped, as a supervisor does before restarting: a zombie still shows its start time

    second = incarnation(cluster, "X.2", LONG_LEASE)
    resumed = until(lambda: [r for r in cluster.runs(flow_id) if r.epoch > claim.epoch], RESUME_DEADLINE,
                    f"the flow to resume under a newer epoch\n{cluster.logs()}")
    assert resumed[0].task == "s1" and resumed[0].attempt == 2 and resumed[0].replica == "X"
    text = second.log_text()
    assert f"took flow {flow_id} over from its previous incarnation at once" in text
    assert f"previous incarnation pid {first.proc.pid} started at" in text and "is gone" in text
    now = cluster.backend.current_claim(flow_id)
    assert now is not None and now.owner == "X" and now.epoch > claim.epoch
    # the presence record is the new process's (on ZooKeeper it replaced a node of the dead session)
    until(lambda: registered_pid(cluster, "X") == second.proc.pid, 10, "X.2's presence")


@pytest.mark.slow
def test_a_stopped_predecessor_keeps_its_claims(cluster: Cluster) -> None:
    # The lease is longer here: the claim must outlive the second replica's
    # start however slow (its last renewal came at most STOPPED_LEASE / 3
    # before the stop, so it holds 40 s after it), or it would be taken
    # over legitimately before we look.
    flow_id, claim = running_flow(cluster, STOPPED_LEASE)
    stop_outside_a_write(cluster, "X.1")  # alive, same start time: only its lease may free the flow

    second = incarnation(cluster, "X.2", STOPPED_LEASE)
    until(lambda: "no restart in place" in second.log_text() and registered_pid(cluster, "X") == second.proc.pid,
          20, f"X.2 to decide and register\n{cluster.logs()}")
    assert f"previous incarnation pid {cluster.replicas['X.1'].proc.pid} started at" in second.log_text()
    assert "still runs" in second.log_text()
    now = cluster.backend.current_claim(flow_id)
    assert now is not None and (now.claim_id, now.epoch) == (claim.claim_id, claim.epoch)
    assert all(r.epoch == claim.epoch for r in cluster.runs(flow_id))
