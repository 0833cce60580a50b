"""Attempt and claim history: each task keeps its last attempts and the flow
its last claims, in the writes that happen anyway (docs/design.md,
"Attempt and claim history")."""

from __future__ import annotations

import pytest

from flowbaton.backends import Backend, TaskDetail
from flowbaton.backends.states import RUNNING, SUCCESS
from flowbaton.engine import Gate, run_flow
from flowbaton.engine.attempts import ATTEMPTS_KEPT, earlier_attempts
from flowbaton.engine.meta import CLAIMS_KEPT, FlowMeta
from flowbaton.ops import actions
from tests import engine_flows as ef
from tests.engine.helpers import claim_of, fake_crash, release_quietly, run_once, submit

#: each test runs with plain tasks and again with their async twins
pytestmark = pytest.mark.usefixtures("task_kind")

F = "tests.engine_flows"


def test_a_task_that_ran_once_carries_no_history(backend: Backend) -> None:
    flow = submit(backend, f"{F}:steps", kwargs={"count": 2})
    assert run_once(backend, flow.id).state == SUCCESS
    assert all("history" not in d.meta for d in backend.load_tasks(flow.id).values())
    claims = FlowMeta(backend.load_flow(flow.id).meta).claims
    assert [(c["owner"], c["ended"]) for c in claims] == [("r1", "finished")]
    assert claims[0]["claimed_at"] <= claims[0]["ended_at"]


def test_retries_are_kept_with_their_times_and_errors(backend: Backend) -> None:
    ef.DEPLOY["succeed_at"] = 3
    flow = submit(backend, f"{F}:flaky", kwargs={"attempts": 5})
    run_once(backend, flow.id)
    detail = backend.load_tasks(flow.id)["flaky"]
    history = detail.meta["history"]
    assert [(e["attempt"], e["outcome"], e["owner"]) for e in history] == [(1, "retry", "r1"), (2, "retry", "r1")]
    assert all(e["started_at"] <= e["finished_at"] <= (detail.started_at or 0) for e in history)
    assert "attempt 1 fails" in history[0]["error"] and history[0]["epoch"] == detail.epoch


def test_an_in_doubt_attempt_is_kept_with_its_dead_owner_and_no_end(backend: Backend) -> None:
    flow = submit(backend, f"{F}:changing")
    fake_crash(backend, flow.id, {"a": "A"}, "b")
    dead_epoch = backend.load_tasks(flow.id)["b"].epoch
    flow_record = backend.load_flow(flow.id)  # a claim history as the dead owner left it: open
    flow_record.meta = FlowMeta(flow_record.meta).claimed(dead_epoch, "dead", 1.0, None).to_dict()
    token = backend.claim(flow.id, "dead", 30.0)
    backend.save_flow(token, flow_record)
    backend.release(token)
    assert run_once(backend, flow.id, replica="r2").state == SUCCESS
    b = backend.load_tasks(flow.id)["b"]
    assert b.attempts == 2 and b.owner == "r2"
    [earlier] = b.meta["history"]
    assert (earlier["attempt"], earlier["outcome"], earlier["owner"], earlier["epoch"]) == \
        (1, "in doubt", "dead", dead_epoch)
    assert earlier["finished_at"] is None
    claims = FlowMeta(backend.load_flow(flow.id).meta).claims
    assert [(c["owner"], c["ended"]) for c in claims] == [("dead", "expired"), ("r2", "finished")]
    assert claims[0]["ended_at"] is None


def test_a_stopped_claim_says_released_and_a_handover_says_handed_back(backend: Backend) -> None:
    for handover, said in ((False, "released"), (True, "handed back")):
        flow = submit(backend, f"{F}:steps", kwargs={"count": 2})
        gate = Gate()
        gate.stop("test", handover=handover)
        token = backend.claim(flow.id, "r1", 30.0)
        try:
            run_flow(backend, claim_of(token, gate), replica_id="r1")
        finally:
            release_quietly(backend, token)
        [claim] = FlowMeta(backend.load_flow(flow.id).meta).claims
        assert claim["ended"] == said and claim["ended_at"] is not None


def test_an_operator_fencing_a_live_claim_ends_it_forced_or_cancelled(backend: Backend) -> None:
    for action, said in ((actions.release, "forced"), (actions.cancel, "cancelled")):
        flow = submit(backend, f"{F}:steps", kwargs={"count": 2})
        token = backend.claim(flow.id, "r1", 30.0)
        record = backend.load_flow(flow.id)
        record.owner, record.state = "r1", RUNNING
        record.meta = FlowMeta(record.meta).claimed(token.epoch, "r1", 5.0, None).to_dict()
        backend.save_flow(token, record)
        action(backend, flow.id, who="op")
        [claim] = FlowMeta(backend.load_flow(flow.id).meta).claims
        assert (claim["owner"], claim["ended"]) == ("r1", said) and claim["ended_at"] > 5.0


def test_an_operator_retry_keeps_the_failed_attempt(backend: Backend) -> None:
    ef.DEPLOY["succeed_at"] = 10
    flow = submit(backend, f"{F}:flaky", kwargs={"attempts": 2})
    run_once(backend, flow.id)
    actions.retry(backend, flow.id, who="op")
    ef.DEPLOY["succeed_at"] = 3
    assert run_once(backend, flow.id, replica="r2").state == SUCCESS
    history = backend.load_tasks(flow.id)["flaky"].meta["history"]
    assert [(e["attempt"], e["outcome"]) for e in history] == [(1, "retry"), (2, "reverted")]


def test_a_revert_keeps_when_it_ran_beside_the_execute(backend: Backend) -> None:
    ef.DEPLOY.update(fail=["c"])
    flow = submit(backend, f"{F}:changing")
    run_once(backend, flow.id)
    a = backend.load_tasks(flow.id)["a"]
    revert = a.meta["revert"]
    assert revert["owner"] == "r1" and revert["started_at"] <= revert["finished_at"] == a.finished_at
    assert revert["execute_finished_at"] <= revert["started_at"]


# ------------------------------------------------------------------ pure


def _attempt(n: int, state: str = RUNNING, **kw: object) -> TaskDetail:
    return TaskDetail("t", state, None, kw.pop("failure", None), "1.0", n, float(n), None, "r", "r#1", 1,  # type: ignore[arg-type]
                      kw.pop("meta", {}))  # type: ignore[arg-type]


def test_the_attempt_history_is_bounded_and_skips_what_is_no_entry() -> None:
    detail = _attempt(1)
    for n in range(2, 40):
        detail = _attempt(n, meta={"history": earlier_attempts(detail, retried_at=float(n))})
    history = detail.meta["history"]
    assert len(history) == ATTEMPTS_KEPT and [e["attempt"] for e in history] == list(range(34, 39))
    hostile = _attempt(2, meta={"history": ["x", 3, None, {"attempt": 1}]})
    assert earlier_attempts(hostile) == [{"attempt": 1}, earlier_attempts(_attempt(2))[0]]


def test_a_long_error_is_cut_in_the_history() -> None:
    failed = _attempt(1, failure={"type": "E", "message": "m" * 10_000, "traceback": ""})
    [entry] = earlier_attempts(failed, retried_at=2.0)
    assert len(entry["error"]) == 200 and entry["outcome"] == "retry" and entry["finished_at"] == 2.0


@pytest.mark.parametrize("found_owner, said", [("r1", "expired"), (None, "released")])
def test_the_claim_history_is_bounded_and_closes_an_open_claim(found_owner: str | None, said: str) -> None:
    meta = FlowMeta()
    for epoch in range(1, 30):
        meta = meta.claimed(epoch, "r1", float(epoch), found_owner)
    claims = meta.claims
    assert len(claims) == CLAIMS_KEPT and claims[-1]["epoch"] == 29 and claims[-1]["ended"] is None
    assert {c["ended"] for c in claims[:-1]} == {said}
    assert meta.claim_ended(28, "finished", 30.0) == meta  # not the open claim: unchanged
    assert meta.claim_ended(29, "finished", 30.0).claims[-1]["ended"] == "finished"
