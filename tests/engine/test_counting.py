"""Counting a batch of fresh claims on their flow records in one write
(``engine.counting``), and running a flow whose claim was counted so."""

from __future__ import annotations

import pytest

from flowbaton.backends import Backend, ClaimToken, FlowDetail
from flowbaton.backends.records import StoredRun
from flowbaton.backends.states import HELD, RUNNING, SUCCESS
from flowbaton.engine import run_flow
from flowbaton.engine.counting import count_claims
from flowbaton.engine.meta import FlowMeta
from flowbaton.engine.poison import PoisonRule

from .helpers import claim_of, fake_crash, submit

#: each test runs with plain tasks and again with their async twins
pytestmark = pytest.mark.usefixtures("task_kind")

F = "tests.engine_flows"


def _orphans(backend: Backend, count: int, **meta: object) -> list[FlowDetail]:
    """Flows a dead owner left running (``fake_crash``): step-0 done, step-1 in doubt."""
    flows = []
    for _ in range(count):
        flow = submit(backend, f"{F}:steps", kwargs={"count": 3})
        fake_crash(backend, flow.id, {"step-0": None}, "step-1")
        if meta:
            token = backend.claim(flow.id, "dead", 30.0)
            record = backend.load_flow(flow.id)
            record.meta.update(meta)
            backend.save_flow(token, record)
            backend.release(token)
        flows.append(backend.load_flow(flow.id))
    return flows


def _batch(backend: Backend, flows: list[FlowDetail], replica: str = "r2") -> list[tuple[ClaimToken, StoredRun]]:
    tokens = backend.claim_many([f.id for f in flows], replica, 30.0)
    return [(token, StoredRun(backend.load_flow(token.flow_id), backend.load_tasks(token.flow_id)))
            for token in tokens]


def test_a_batch_is_counted_in_one_write_and_each_flow_resumes_counted_once(backend: Backend) -> None:
    flows = _orphans(backend, 3, progress_mark=1)  # step-0 had ended before the owner died
    batch = _batch(backend, flows)
    prepared = count_claims(backend, batch, replica_id="r2", allow=["tests."], poison=PoisonRule(3), build=None)
    assert set(prepared) == {f.id for f in flows}
    for token, _ in batch:
        ready = prepared[token.flow_id]
        assert ready.found is not None and ready.found.owner == "dead"
        stored = backend.load_flow(token.flow_id)
        assert stored == ready.flow and stored.owner == "r2" and stored.epoch == token.epoch
        assert FlowMeta(stored.meta).takeovers == 1
        report = run_flow(backend, claim_of(token), flow=ready.flow, tasks=ready.tasks, found=ready.found,
                          replica_id="r2", allow=["tests."])
        assert report.state == SUCCESS
        meta = FlowMeta(backend.load_flow(token.flow_id).meta)
        assert meta.takeovers == 1  # counted in the batch, not again by the run
        [resume] = FlowMeta(backend.load_flow(token.flow_id).meta).resumes
        assert (resume["previous_owner"], resume["takeover"]) == ("dead", True)


def test_what_needs_more_than_a_count_is_left_to_its_worker(backend: Backend) -> None:
    plain, poisoned, not_allowed, lost = _orphans(backend, 4)
    for flow, meta in ((poisoned, {"takeovers": 3, "progress_mark": 1}),):
        token = backend.claim(flow.id, "dead", 30.0)
        record = backend.load_flow(flow.id)
        record.meta.update(meta)
        record.owner = "dead"
        backend.save_flow(token, record)
        backend.release(token)
    batch = _batch(backend, [plain, poisoned, not_allowed, lost])
    lost_token = next(token for token, _ in batch if token.flow_id == lost.id)
    backend.release(lost_token)  # the claim is gone before the batch writes
    batch = [(token, stored) if token.flow_id != not_allowed.id else
             (token, StoredRun(_renamed(stored.flow), stored.tasks)) for token, stored in batch]
    before = {f.id: backend.load_flow(f.id) for f in (poisoned, not_allowed, lost)}
    prepared = count_claims(backend, batch, replica_id="r2", allow=["tests."], poison=PoisonRule(3), build=None)
    assert prepared[plain.id].found is not None
    for flow_id, record in before.items():
        assert prepared[flow_id].found is None  # read, not counted: the worker takes it from here
        assert backend.load_flow(flow_id) == record  # nothing written
    # The poisoned flow's worker holds it, as for a single claim.
    token = next(token for token, _ in batch if token.flow_id == poisoned.id)
    ready = prepared[poisoned.id]
    report = run_flow(backend, claim_of(token), flow=ready.flow, tasks=ready.tasks, replica_id="r2",
                      allow=["tests."], poison=PoisonRule(3))
    assert report.state == HELD


def _renamed(flow: FlowDetail) -> FlowDetail:
    """The record as if its factory were one this replica may not import."""
    flow.factory = "elsewhere.module:build"
    return flow


def test_save_flows_answers_per_flow(backend: Backend) -> None:
    flows = _orphans(backend, 3)
    tokens = backend.claim_many([f.id for f in flows], "r2", 30.0)
    backend.release(tokens[1])
    records = []
    for token in tokens:
        record = backend.load_flow(token.flow_id)
        record.state, record.owner, record.reason = RUNNING, "r2", "batched"
        records.append(record)
    assert backend.save_flows(list(zip(tokens, records, strict=True))) == [True, False, True]
    assert [backend.load_flow(t.flow_id).reason for t in tokens] == ["batched", None, "batched"]
    assert backend.save_flows([]) == []
