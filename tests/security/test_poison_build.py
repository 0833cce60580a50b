"""docs/security.md, "Code that does not return": building a flow counts as an attempt.

A factory that kills its process while building (os._exit, a segfault, OOM)
used to crash-loop the whole cluster: the takeover count was written only
after the build, so the poison rule never tripped. Now each claim is counted
on the flow record before the factory is imported, and a flow over
``max_takeovers`` is HELD without being built. A replica that merely lacks
the code declines without counting; a build that hangs past
``build_timeout`` counts.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from flowbaton.backends.base import Backend
from flowbaton.backends.records import FlowDetail
from flowbaton.backends.states import HELD, PENDING
from flowbaton.engine import run_flow
from flowbaton.engine.errors import FactoryError
from flowbaton.engine.events import NoEvents
from flowbaton.engine.poison import PoisonRule
from flowbaton.engine.timeouts import BuildTimeout
from tests.coordinator.cluster import Cluster
from tests.engine.helpers import claim_of
from tests.servers import until

from . import hostile_flows
from .hostile_flows import ProcessDeath

pytestmark = pytest.mark.security

HOSTILE = "tests.security.hostile_flows"


def plant(backend: Backend, factory: str, **kwargs: object) -> str:
    """Store a flow record directly, as someone with write access to the
    store would: no submit-time build (which would run the factory here)."""
    now = time.time()
    flow_id = uuid.uuid4().hex
    backend.create_flow(FlowDetail(id=flow_id, name="hostile", factory=factory, kwargs=dict(kwargs),
                                   state=PENDING, created_at=now, updated_at=now))
    return flow_id


def marks(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


@pytest.mark.slow
def test_a_factory_that_kills_its_process_is_held_after_max_takeovers_plus_one_deaths(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The exact reproduction: replicas restarted one after another, each
    dying in the factory, until the flow is HELD."""
    marker = tmp_path / "built"
    flow_id = plant(cluster.backend, f"{HOSTILE}:dies_while_building", marker=str(marker))
    max_takeovers, deaths = 1, 0
    for attempt in range(max_takeovers + 3):
        replica = cluster.spawn(f"r{attempt}", lease=1.0, max_takeovers=max_takeovers)
        until(lambda: not replica.alive() or cluster.state(flow_id) == HELD, 30,  # noqa: B023
              f"replica r{attempt} to die or the flow to be held\n{cluster.logs()}")
        if cluster.state(flow_id) == HELD:
            break
        assert replica.proc.wait() == 23, replica.log_text()
        deaths += 1
    flow = cluster.backend.load_flow(flow_id)
    assert flow.state == HELD, cluster.logs()
    assert f"taken over 2 times without any task finishing (limit {max_takeovers})" in (flow.reason or "")
    assert "building the flow" in (flow.reason or "")
    assert deaths == max_takeovers + 1 and marks(marker) == deaths  # held without building again
    survivor = next(r for r in cluster.replicas.values() if r.alive())
    until(lambda: cluster.backend.current_claim(flow_id) is None, 10, "the held flow's claim to be released")
    assert survivor.alive()


def test_each_claim_is_counted_before_the_factory_runs(backend: Backend, tmp_path: Path) -> None:
    marker = tmp_path / "built"
    flow_id = plant(backend, f"{HOSTILE}:crashes_while_building", marker=str(marker))
    for n in range(2):
        token = backend.claim(flow_id, f"r{n}", 30.0, force=True)
        with pytest.raises(ProcessDeath):
            run_flow(backend, claim_of(token), replica_id=f"r{n}", allow=["tests."], poison=PoisonRule(1))
        stored = backend.load_flow(flow_id)  # written before the factory ran
        assert stored.owner == f"r{n}" and stored.meta["takeovers"] == n
    token = backend.claim(flow_id, "r2", 30.0, force=True)
    report = run_flow(backend, claim_of(token), replica_id="r2", allow=["tests."], poison=PoisonRule(1))
    assert report.state == HELD and "taken over 2 times" in (report.reason or "")
    assert marks(marker) == 2  # held without building
    assert backend.load_flow(flow_id).owner is None


def test_a_replica_without_the_code_declines_without_counting(backend: Backend) -> None:
    flow_id = plant(backend, "tests.security.not_deployed_here:factory")
    before = backend.load_flow(flow_id)
    for n in range(4):
        token = backend.claim(flow_id, f"r{n}", 30.0, force=True)
        with pytest.raises(FactoryError, match="not_deployed_here"):
            run_flow(backend, claim_of(token), replica_id=f"r{n}", allow=["tests."], poison=PoisonRule(1))
        backend.release(token)
    after = backend.load_flow(flow_id)
    assert (after.state, after.owner, after.meta) == (before.state, before.owner, before.meta) == (PENDING, None, {})


class Stuck(NoEvents):
    """Records the stuck/unstuck events; the others are ignored."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    def on_stuck(self, flow_id: str, task_id: str | None, timeout: float) -> None:
        self.calls.append(("stuck", flow_id, task_id))

    def on_unstuck(self, flow_id: str, task_id: str | None) -> None:
        self.calls.append(("unstuck", flow_id, task_id))


def test_a_build_past_the_build_timeout_is_declined_counted_and_reported(
    backend: Backend, tmp_path: Path, gate: None
) -> None:
    marker = tmp_path / "built"
    flow_id = plant(backend, f"{HOSTILE}:hangs_while_building", marker=str(marker))
    events = Stuck()
    for n in range(2):
        token = backend.claim(flow_id, f"r{n}", 30.0, force=True)
        began = time.monotonic()
        with pytest.raises(BuildTimeout, match="build_timeout"):
            run_flow(backend, claim_of(token), replica_id=f"r{n}", allow=["tests."], poison=PoisonRule(1),
                     build_timeout=0.3, events=events)
        assert time.monotonic() - began < 5.0
        backend.release(token)
        stored = backend.load_flow(flow_id)
        assert stored.owner == f"r{n}" and stored.meta["takeovers"] == n  # counted, like a crash
    assert events.calls == [("stuck", flow_id, None)] * 2  # the builds still hang
    hostile_flows.GATE.set()
    until(lambda: events.calls.count(("unstuck", flow_id, None)) == 2, 10, "the abandoned builds to return")
    token = backend.claim(flow_id, "r2", 30.0, force=True)
    report = run_flow(backend, claim_of(token), replica_id="r2", allow=["tests."], poison=PoisonRule(1),
                      build_timeout=0.3)
    assert report.state == HELD and "hanging" in (report.reason or "")
    assert marks(marker) == 2
