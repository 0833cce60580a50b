"""The owner's side of a handover (``coordinator.handover.Mailbox``): which
requests it obeys, which it clears as moot, and drains of one incarnation."""

from __future__ import annotations

from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import ClaimToken, Handover
from flowbaton.coordinator.handover import Mailbox
from flowbaton.coordinator.lease import LeasedGate
from flowbaton.engine.claim import Claim

STARTED = 1700000000.25


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def held(flow_id: str, epoch: int) -> Claim[LeasedGate]:
    return Claim(ClaimToken(flow_id, f"r1#{flow_id}", epoch), LeasedGate(), 0.0)


def ask(flow_id: str | None, epoch: int = 0, started_at: float = STARTED) -> Handover:
    return Handover("r1", flow_id, epoch, started_at, "alice", 1.0)


def test_a_request_about_the_held_claim_stops_its_gate_and_is_cleared_once_handed_back() -> None:
    backend, clock = MemoryBackend(), Clock()
    box = Mailbox(backend, "r1", STARTED, lease=3.0, clock=clock)
    mine, other = held("f", 2), held("g", 5)
    backend.request_handover(ask("f", 2))
    box.check([mine, other])
    assert mine.gate.stopped and "handover requested by alice" in (mine.gate.stop_reason or "")
    assert not other.gate.stopped and box.draining is None
    box.check([mine, other])  # asked again until handed back: still one request
    assert box.handed_back("g") is None
    assert box.handed_back("f") == ask("f", 2) and backend.load_handovers("r1") == []


def test_requests_about_other_claims_are_cleared_as_moot() -> None:
    backend, clock = MemoryBackend(), Clock()
    box = Mailbox(backend, "r1", STARTED, lease=3.0, clock=clock)
    newer = held("f", 7)
    backend.request_handover(ask("f", 6))  # about an earlier claim of a flow held again since
    backend.request_handover(ask("g", 1))  # about a flow not held (yet: a claim not tracked?)
    box.check([newer])
    assert not newer.gate.stopped
    assert [r.flow_id for r in backend.load_handovers("r1")] == ["g"]  # given a lease's grace
    clock.now += 3.5
    box.check([newer])
    assert backend.load_handovers("r1") == []


def test_a_claim_tracked_within_the_grace_still_obeys() -> None:
    backend, clock = MemoryBackend(), Clock()
    box = Mailbox(backend, "r1", STARTED, lease=3.0, clock=clock)
    backend.request_handover(ask("g", 1))
    box.check([])
    clock.now += 1.0
    late = held("g", 1)
    box.check([late])
    assert late.gate.stopped


def test_a_drain_of_this_incarnation_stops_everything_until_lifted() -> None:
    backend, clock = MemoryBackend(), Clock()
    box = Mailbox(backend, "r1", STARTED, lease=3.0, clock=clock)
    backend.request_handover(ask(None, started_at=STARTED - 50))  # an earlier process under this id
    box.check([])
    assert box.draining is None and backend.load_handovers("r1") == []
    backend.request_handover(ask(None))
    first = held("f", 1)
    box.check([first])
    assert box.draining == ask(None) and first.gate.stopped
    backend.clear_handover("r1", None)  # flowbaton drain --undo
    box.check([])
    assert box.draining is None
