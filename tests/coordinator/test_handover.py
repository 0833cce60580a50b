"""Handover instead of double runs: ``release`` without ``--force`` and
``drain``, with real replica processes on every shared backend.

The ledger (one line per task execution) proves that nothing ran twice:
the owner finishes what it runs and records it, then hands the flow back.
"""

from __future__ import annotations

from collections import Counter

import pytest

from flowbaton.backends.states import SUCCESS
from tests.servers import until

from .cluster import Cluster
from .ops_helpers import run_cli

pytestmark = pytest.mark.slow


def owner_of(cluster: Cluster, flow_id: str) -> str:
    claim = until(lambda: cluster.backend.current_claim(flow_id), 10, "a claim")
    return str(claim.owner)


def claims_of(cluster: Cluster, replica_id: str) -> list[str]:
    return [c.flow_id for c in cluster.backend.list_claims() if c.owner == replica_id]


def test_release_hands_the_flow_back_and_runs_the_in_flight_task_once(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.spawn("r1")
    cluster.spawn("r2")
    cluster.wait_registered("r1", "r2")
    flow_id = cluster.submit(n=4, pause=1.5)
    cluster.wait_runs(flow_id, 2)  # s1 has started and runs for 1.5 s
    owner = owner_of(cluster, flow_id)
    other = next(name for name in ("r1", "r2") if name != owner)

    out = run_cli(capsys, cluster.backend, "release", flow_id, "--wait", "--timeout", "30", "--yes")
    assert out.code == 0, out
    assert f"asked {owner} to hand flow {flow_id} back" in out.stdout and "handed back" in out.stdout
    cluster.wait_done(flow_id)

    runs = cluster.runs(flow_id)
    assert Counter(r.task for r in runs) == {"s0": 1, "s1": 1, "s2": 1, "s3": 1}, runs  # nothing twice
    assert all(r.attempt == 1 for r in runs), runs  # nothing was in doubt
    tasks = cluster.backend.load_tasks(flow_id)
    assert tasks["s1"].owner == owner and tasks["s1"].state == SUCCESS  # the in-flight task's result kept
    assert tasks["s3"].owner == other  # the rest moved (the owner leaves it alone for a lease)
    assert cluster.state(flow_id) == SUCCESS
    until(lambda: cluster.backend.load_handovers(owner) == [], 10, "the request to be cleared")
    assert f"flow {flow_id}: handed back on the request of" in cluster.replicas[owner].log_text()


def test_drain_wait_of_an_idle_replica_returns_once_it_read_the_request(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Holding nothing when asked is not being drained: until its next beat
    reads the request, the replica may still claim. ``--wait`` returns only
    once its presence says it obeys this drain, so what is submitted after
    "drained" never runs there."""
    cluster.spawn("r1", concurrency=2)
    cluster.spawn("r2", concurrency=2)
    cluster.wait_registered("r1", "r2")
    out = run_cli(capsys, cluster.backend, "drain", "r1", "--wait", "--timeout", "30", "--yes")
    assert out.code == 0 and "replica r1 drained" in out.stdout, out
    asked = next(request for request in cluster.backend.load_handovers("r1") if request.drain)
    presence = next(r for r in cluster.backend.list_replicas() if r.replica_id == "r1")
    assert presence.draining_since == asked.at  # read, and said so, before --wait returned
    later = [cluster.submit(n=1, pause=0.05) for _ in range(4)]
    cluster.wait_done(*later)
    assert {r.replica for r in cluster.runs() if r.flow in later} == {"r2"}

    assert run_cli(capsys, cluster.backend, "drain", "r1", "--undo").code == 0
    until(lambda: next(r for r in cluster.backend.list_replicas() if r.replica_id == "r1").draining_since is None,
          10, "r1 to say it claims again")


def test_drain_hands_everything_back_and_claims_nothing_until_lifted(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.spawn("r1", concurrency=2)
    cluster.spawn("r2", concurrency=2)
    cluster.wait_registered("r1", "r2")
    flows = [cluster.submit(n=3, pause=0.6) for _ in range(6)]  # more than r2 alone has room for
    until(lambda: claims_of(cluster, "r1"), 20, "r1 to hold a flow")

    out = run_cli(capsys, cluster.backend, "drain", "r1", "--wait", "--timeout", "30", "--yes")
    assert out.code == 0 and "asked replica r1 to hand back" in out.stdout and "drained" in out.stdout, out
    assert claims_of(cluster, "r1") == []
    listed = run_cli(capsys, cluster.backend, "replicas", "--json").json()
    assert {r["replica_id"]: r["draining"] for r in listed["replicas"]} == {"r1": True, "r2": False}

    later = [cluster.submit(n=2, pause=0.05) for _ in range(3)]
    cluster.wait_done(*flows, *later)
    assert {r.replica for r in cluster.runs() if r.flow in later} == {"r2"}  # drained: claims nothing
    counts = Counter((r.flow, r.task) for r in cluster.runs())
    assert set(counts.values()) == {1}, counts  # handed back, never run twice
    assert all(cluster.state(f) == SUCCESS for f in flows + later)

    lifted = run_cli(capsys, cluster.backend, "drain", "r1", "--undo")
    assert lifted.code == 0 and "lifted the drain of replica r1" in lifted.stdout, lifted
    assert run_cli(capsys, cluster.backend, "drain", "r2", "--yes").code == 0  # only r1 may take the next one
    until(lambda: "replica r2 drained by" in cluster.replicas["r2"].log_text(), 10, "r2 to see its drain")
    again = cluster.submit(n=1, pause=0.05)
    cluster.wait_done(again)
    assert {r.replica for r in cluster.runs(again)} == {"r1"}
