"""Failover with real replica processes on every shared backend.

Each test starts replicas as subprocesses, injects a real fault (SIGKILL,
SIGTERM, SIGSTOP/SIGCONT, a task that kills its process) and proves the
outcome from two independent records: the ledger file every task execution
appends to, and the task details stored in the backend (with the epoch of
the claim that wrote them). Conditions are awaited with deadlines.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from flowbaton.backends.states import HELD, PENDING, SUCCESS
from tests.backends import backend_params
from tests.conftest import CLUSTER, SHARED_BACKENDS, make_url
from tests.servers import until

from .cluster import MIXED_STEPS, STEPS, Cluster

pytestmark = pytest.mark.slow


@pytest.fixture(params=backend_params((*SHARED_BACKENDS, CLUSTER)))
def shared_backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """These failovers run on the Redis Cluster too (``ON_ONE_REDIS`` says which do not)."""
    return make_url(request.param, request, tmp_path)


#: What these tests show besides a replica's faults (mixed sync/async steps,
#: declines, the poison rule) is the engine's and the coordinator's, the
#: same on every Redis: on the cluster they are not collected (conftest).
ON_ONE_REDIS = ("-mixed]", "declines_and_another_runs_it[", "others_keep_running[")


def owner_of(cluster: Cluster, flow_id: str) -> str:
    claim = until(lambda: cluster.backend.current_claim(flow_id), 10, "a claim")
    return str(claim.owner)


@pytest.mark.parametrize("factory", [STEPS, MIXED_STEPS], ids=["sync", "mixed"])
def test_kill_9_of_the_owner_mid_flow(cluster: Cluster, factory: str) -> None:
    cluster.spawn("r1")
    cluster.spawn("r2")
    cluster.wait_registered("r1", "r2")
    flow_id = cluster.submit(n=6, pause=0.4, factory=factory)
    cluster.wait_runs(flow_id, 3)  # s2 started: s0 and s1 are done
    victim = owner_of(cluster, flow_id)
    cluster.replicas[victim].signal(signal.SIGKILL)
    cluster.replicas[victim].proc.wait()
    before = cluster.backend.load_tasks(flow_id)
    finished = {t for t, d in before.items() if d.state == SUCCESS}
    in_doubt = {t for t, d in before.items() if d.state == "RUNNING"}
    assert {"s0", "s1"} <= finished and len(in_doubt) == 1

    cluster.wait_done(flow_id)
    assert cluster.state(flow_id) == SUCCESS
    counts = Counter(r.task for r in cluster.runs(flow_id))
    assert all(counts[t] == 1 for t in finished), counts  # never run again
    assert all(counts[t] == 2 for t in in_doubt), counts  # at-least-once: re-run
    after = cluster.backend.load_tasks(flow_id)
    assert all(after[t] == before[t] for t in finished)  # results kept as stored
    survivor = next(n for n in cluster.replicas if n != victim)
    assert {after[t].owner for t in after if t not in finished} == {survivor}
    assert all(after[t].attempts == 2 for t in in_doubt)


def test_graceful_stop_hands_over_within_a_second(cluster: Cluster) -> None:
    cluster.spawn("r1")
    cluster.spawn("r2")
    cluster.wait_registered("r1", "r2")
    flow_id = cluster.submit(n=8, pause=0.2)
    cluster.wait_runs(flow_id, 2)
    owner = owner_of(cluster, flow_id)
    stopped_at = time.time()
    cluster.replicas[owner].signal(signal.SIGTERM)
    assert cluster.replicas[owner].proc.wait(timeout=10) == 0
    cluster.wait_done(flow_id)

    tasks = cluster.backend.load_tasks(flow_id)
    resumed = min(d.started_at or 0.0 for d in tasks.values() if d.owner != owner)
    assert resumed - stopped_at < 1.0, f"handover took {resumed - stopped_at:.2f}s"
    runs = cluster.runs(flow_id)
    assert len(runs) == 8 and all(r.attempt == 1 for r in runs)  # nothing in doubt, nothing repeated
    assert cluster.state(flow_id) == SUCCESS
    assert owner not in {r.replica_id for r in cluster.backend.list_replicas()}  # presence removed


def stop_outside_a_write(cluster: Cluster, name: str) -> None:
    """SIGSTOP the replica, but not while it holds SQLite's write lock: a
    process stopped inside a write transaction blocks every writer on the
    host (a SQLite property, see docs/design.md, "Claims and fencing"), which is not what this test is
    about. Transactions are microseconds long, so a retry finds a gap."""
    replica = cluster.replicas[name]
    for _ in range(50):
        replica.signal(signal.SIGSTOP)
        if not cluster.writers_blocked():
            return
        replica.signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the replica always held the write lock")


@pytest.mark.parametrize("factory", [STEPS, MIXED_STEPS], ids=["sync", "mixed"])
def test_a_zombie_owner_writes_nothing_and_starts_nothing(cluster: Cluster, factory: str) -> None:
    """With the mixed flow the zombie's running step (s1) is async: once the
    zombie runs again and learns its claim is gone, the call is cancelled."""
    cluster.spawn("r1")
    cluster.spawn("r2")
    cluster.wait_registered("r1", "r2")
    flow_id = cluster.submit(n=6, pause=0.6, factory=factory)
    cluster.wait_runs(flow_id, 2)  # s1 is running
    zombie = owner_of(cluster, flow_id)
    stop_outside_a_write(cluster, zombie)
    zombie_epoch = cluster.backend.load_tasks(flow_id)["s1"].epoch
    snapshot = cluster.backend.load_tasks(flow_id)
    zombie_runs = [r for r in cluster.runs(flow_id) if r.replica == zombie]

    # the lease runs out; the other replica takes over and gets going
    until(lambda: any(r.epoch > zombie_epoch for r in cluster.runs(flow_id)), 20, "a takeover")
    cluster.replicas[zombie].signal(signal.SIGCONT)
    cluster.wait_done(flow_id)
    until(lambda: f"flow {flow_id}: gave up the claim" in cluster.replicas[zombie].log_text(), 10,
          "the zombie to notice it lost the claim")

    assert [r for r in cluster.runs(flow_id) if r.replica == zombie] == zombie_runs  # started nothing more
    final = cluster.backend.load_tasks(flow_id)
    for task_id, detail in final.items():
        if detail.epoch == zombie_epoch:
            assert detail == snapshot[task_id]  # not one zombie write landed
    assert final["s1"].epoch > zombie_epoch and final["s1"].state == SUCCESS  # the in-doubt task, re-run
    flow = cluster.backend.load_flow(flow_id)
    assert flow.state == SUCCESS and flow.epoch > zombie_epoch
    assert cluster.replicas[zombie].alive()  # fenced, not crashed, and back in service:
    until(lambda: zombie in {r.replica_id for r in cluster.backend.list_replicas()}, 10, "the zombie's presence")


def test_three_replicas_share_thirty_flows(cluster: Cluster) -> None:
    names = ("r1", "r2", "r3")
    for name in names:
        cluster.spawn(name, concurrency=2)
    cluster.wait_registered(*names)
    overload: list[str] = []
    done = threading.Event()

    def sample() -> None:  # no replica ever holds more claims than its concurrency
        while not done.is_set():
            per_owner = Counter(c.owner for c in cluster.backend.list_claims())
            overload.extend(o for o, n in per_owner.items() if n > 2)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    flow_ids = [cluster.submit(n=2, pause=0.1) for _ in range(30)]
    try:
        cluster.wait_done(*flow_ids, timeout=90)
    finally:
        done.set()
        sampler.join()
    assert all(cluster.state(f) == SUCCESS for f in flow_ids)
    assert not overload
    runs = cluster.runs()
    assert {r.replica for r in runs} == set(names)  # every replica ran some
    for flow_id in flow_ids:
        mine = [r for r in runs if r.flow == flow_id]
        assert len(mine) == 2 and len({(r.replica, r.epoch) for r in mine}) == 1  # one owner, one claim
    assert cluster.backend.list_claims() == []


def test_a_replica_without_the_code_declines_and_another_runs_it(cluster: Cluster) -> None:
    from .test_cli import cli

    cluster.spawn("picky", allow="someone.else.")
    cluster.wait_registered("picky")
    flow_id = cluster.submit(n=2)
    until(lambda: cluster.backend.load_declines(flow_id), 15, "the decline")
    # The decline is recorded before the claim is released: wait for both.
    until(lambda: cluster.backend.current_claim(flow_id) is None, 15, "the decliner's release")
    assert cluster.state(flow_id) == PENDING
    shown = cli(cluster.url, "show", flow_id)
    assert "declined  by picky" in shown.stdout and "FactoryNotAllowed" in shown.stdout
    assert "someone.else." in shown.stdout and "STRANDED" in shown.stdout

    cluster.spawn("able")
    cluster.wait_done(flow_id)
    assert cluster.state(flow_id) == SUCCESS
    assert {r.replica for r in cluster.runs(flow_id)} == {"able"}
    doc = cli(cluster.url, "show", flow_id, "--json").json()
    [decline] = doc["declines"]
    assert decline["replica_id"] == "picky" and "not under this replica's allowed prefixes" in decline["reason"]
    assert doc["stranded"] is False


def test_a_poison_flow_is_held_and_the_others_keep_running(cluster: Cluster) -> None:
    names = ("r1", "r2", "r3")
    for name in names:
        cluster.spawn(name, lease=1.5, max_takeovers=1)
    cluster.wait_registered(*names)
    first = [cluster.submit(n=2) for _ in range(4)]
    poison = cluster.submit(factory="tests.coord_flows:poison")
    until(lambda: sum(not r.alive() for r in cluster.replicas.values()) >= 1, 20, "the poison to kill a replica")
    later = [cluster.submit(n=2) for _ in range(4)]
    until(lambda: cluster.state(poison) == HELD, 40, f"the poison flow to be held\n{cluster.logs()}")
    cluster.wait_done(*first, *later)

    assert all(cluster.state(f) == SUCCESS for f in first + later)
    flow = cluster.backend.load_flow(poison)
    assert "taken over 2 times without any task finishing (limit 1)" in (flow.reason or "")
    dead = [r for r in cluster.replicas.values() if not r.alive()]
    assert len(dead) == 2 and all(r.proc.returncode == 17 for r in dead)
    assert len(cluster.runs(poison)) == 2  # ran twice, then held: not on every replica in turn
    # The HELD record is written before the claim is released: wait for the release.
    until(lambda: cluster.backend.current_claim(poison) is None, 10, "the held flow's claim to be released")
