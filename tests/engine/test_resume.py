"""The resume rules of docs/design.md ("Resume rules"), one by one, on every backend.

A dead owner's leftovers are written straight into the store (``fake_crash``);
``test_crash.py`` does the same with a real SIGKILL.
"""

from __future__ import annotations

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.records import TaskDetail
from flowbaton.backends.states import HELD, REVERTED, REVERTING, RUNNING, SUCCESS
from flowbaton.engine import DECISIONS_KEY, plan_flow, plan_resume, rebuild
from flowbaton.engine.lifecycle import _attempt, _start
from flowbaton.engine.poison import PoisonRule
from flowbaton.engine.runner import FlowRun
from tests import engine_flows as ef
from tests.engine.helpers import claim_of, fake_crash, run_once, submit

#: each test runs with plain tasks and again with their async twins
pytestmark = pytest.mark.usefixtures("task_kind")

CHANGING = "tests.engine_flows:changing"


def crashed_after_a(backend: Backend, running: str | None = "b", version: str = "1.0") -> str:
    flow = submit(backend, CHANGING)
    fake_crash(backend, flow.id, {"a": "a@stored"}, running, version=version)
    return flow.id


def test_finished_tasks_are_reused_and_in_doubt_task_reruns(backend: Backend) -> None:
    flow_id = crashed_after_a(backend)
    report = run_once(backend, flow_id)
    assert report.state == SUCCESS
    assert ef.CALLS == ["b", "c"]  # rule 3: a not again; rule 4: b again
    assert report.results["a"] == "a@stored"
    b = backend.load_tasks(flow_id)["b"]
    assert b.attempts == 2  # the next attempt number after the in-doubt one


def test_in_doubt_rerun_is_flagged_and_keeps_the_idempotency_key(backend: Backend, tmp_path: object) -> None:
    seen: list[tuple[str, int, bool, str]] = []

    class Probe(ef.Tracked):
        def execute(self, **inputs: object) -> str:
            from flowbaton.engine import current_task

            ctx = current_task()
            seen.append((ctx.task_id, ctx.attempt, ctx.in_doubt, ctx.idempotency_key))
            return "ok"

    original = ef.Tracked.execute
    ef.Tracked.execute = Probe.execute  # type: ignore[method-assign]
    try:
        flow_id = crashed_after_a(backend)
        run_once(backend, flow_id)
    finally:
        ef.Tracked.execute = original  # type: ignore[method-assign]
    assert seen == [("b", 2, True, f"{flow_id}/b"), ("c", 1, False, f"{flow_id}/c")]


def test_added_task_runs_first_and_removed_task_is_unmatched(backend: Backend) -> None:
    flow_id = crashed_after_a(backend, running="c")
    ef.DEPLOY["ids"] = ["a", "new", "c"]  # deploy: b removed, new added before in-doubt c
    report = run_once(backend, flow_id)
    assert report.state == SUCCESS
    assert ef.CALLS == ["new", "c"]  # rule 6: today's order; b is gone, never runs
    assert report.unmatched == []  # b never reached the store
    diff = backend.load_flow(flow_id).meta["diff"]
    assert diff["added"] == ["new"]


def test_unmatched_stored_task_is_kept_never_run_and_reported(backend: Backend) -> None:
    flow = submit(backend, CHANGING)
    fake_crash(backend, flow.id, {"a": "A", "b": "B"}, "c")
    ef.DEPLOY["ids"] = ["a", "c"]
    report = run_once(backend, flow.id)
    assert report.state == SUCCESS and ef.CALLS == ["c"]
    assert report.unmatched == ["b"]
    assert backend.load_tasks(flow.id)["b"].result == "B"  # kept
    stored = backend.load_flow(flow.id)
    assert stored.meta["diff"]["unmatched"] == ["b"]
    assert stored.meta["resumes"][-1]["takeover"] is True


def test_renamed_callable_with_the_same_explicit_id_is_matched(backend: Backend) -> None:
    flow_id = crashed_after_a(backend, running=None)
    ef.DEPLOY["classes"] = {"a": ef.RenamedTracked, "b": ef.RenamedTracked}
    report = run_once(backend, flow_id)
    assert report.state == SUCCESS and ef.CALLS == ["b", "c"]
    assert report.results["a"] == "a@stored" and report.unmatched == []


def test_minor_version_change_reuses(backend: Backend) -> None:
    flow_id = crashed_after_a(backend)
    ef.DEPLOY["versions"] = {"a": "1.7"}
    report = run_once(backend, flow_id)
    assert report.state == SUCCESS and "a" not in ef.CALLS
    assert backend.load_flow(flow_id).meta["diff"]["version_changed"] == []


def test_major_change_default_policy_holds_the_flow(backend: Backend) -> None:
    flow_id = crashed_after_a(backend)
    ef.DEPLOY["versions"] = {"a": "2.0"}
    report = run_once(backend, flow_id)
    assert report.state == HELD and ef.CALLS == []
    assert "'a' changed major version 1.0 -> 2.0" in (report.reason or "")
    stored = backend.load_flow(flow_id)
    assert stored.meta["diff"]["version_changed"] == [
        {"task": "a", "stored": "1.0", "current": "2.0", "policy": "fail"}
    ]
    assert backend.load_tasks(flow_id)["a"].result == "a@stored"  # nothing lost


@pytest.mark.parametrize(("policy", "calls", "result"), [
    ("rerun", ["a", "b", "c"], "a@2.0"),
    ("reuse", ["b", "c"], "a@stored"),
    (ef.double, ["b", "c"], "migrated(a@stored)"),
])
def test_major_change_follows_the_policy(backend: Backend, policy: object, calls: list[str], result: str) -> None:
    flow_id = crashed_after_a(backend)
    ef.DEPLOY.update(versions={"a": "2.0"}, policies={"a": policy})
    report = run_once(backend, flow_id)
    assert report.state == SUCCESS
    assert calls == ef.CALLS and report.results["a"] == result
    assert backend.load_tasks(flow_id)["a"].version == "2.0"


def test_operator_decision_releases_a_held_flow(backend: Backend) -> None:
    flow_id = crashed_after_a(backend)
    ef.DEPLOY["versions"] = {"a": "2.0"}
    assert run_once(backend, flow_id).state == HELD
    token = backend.claim(flow_id, "operator", 5.0)
    flow = backend.load_flow(flow_id)
    flow.state, flow.reason = RUNNING, None
    flow.meta[DECISIONS_KEY] = {"*": "reuse"}
    backend.save_flow(token, flow)
    backend.release(token)
    assert run_once(backend, flow_id).state == SUCCESS
    assert ef.CALLS == ["b", "c"]


def test_plan_shows_what_a_resume_would_do_without_writing(backend: Backend) -> None:
    flow_id = crashed_after_a(backend)
    ef.DEPLOY.update(ids=["a", "new", "b"], versions={"a": "2.0"}, policies={"a": "rerun"})
    before = (backend.load_flow(flow_id), backend.load_tasks(flow_id))
    plan = plan_flow(backend, flow_id, allow=["tests."])
    assert plan["added"] == ["new"] and plan["in_doubt"] == ["b"]
    assert plan["run"] == ["a", "new", "b"]
    assert plan["version_changed"][0]["policy"] == "rerun"
    assert (backend.load_flow(flow_id), backend.load_tasks(flow_id)) == before
    assert ef.CALLS == []


def test_interrupted_revert_goes_on_reverting(backend: Backend) -> None:
    flow = submit(backend, CHANGING)
    token = backend.claim(flow.id, "dead", 30.0)
    for tid, state in (("a", SUCCESS), ("b", REVERTED)):
        backend.save_task(token, TaskDetail(tid, state, f"{tid}@1.0", attempts=1))
    backend.save_task(token, TaskDetail("c", "FAILURE", failure={"type": "E", "message": "m", "traceback": ""}))
    stored = backend.load_flow(flow.id)
    stored.state, stored.owner, stored.reason = REVERTING, "dead", "task 'c' failed"
    backend.save_flow(token, stored)
    backend.release(token)
    report = run_once(backend, flow.id)
    assert report.state == REVERTED
    assert ef.CALLS == ["revert:c", "revert:a"]  # b was already undone


def test_corrupt_task_record_holds_the_flow_and_keeps_data(backend_url: str, backend: Backend) -> None:
    from tests.contract.corrupt import corrupt_task

    flow = submit(backend, CHANGING)
    fake_crash(backend, flow.id, {"a": "A"}, "b")
    corrupt_task(backend_url, flow.id, "b", backend=backend)
    report = run_once(backend, flow.id)
    assert report.state == HELD and "corrupt record" in (report.reason or "")
    assert "b" in (report.reason or "")
    assert ef.CALLS == []


def test_poison_flow_is_held_after_too_many_takeovers(backend: Backend) -> None:
    flow_id = crashed_after_a(backend)
    for attempt in range(3):
        token = backend.claim(flow_id, f"victim{attempt}", 30.0)
        stored = backend.load_flow(flow_id)
        # what run_flow writes at start, then the replica "dies" without progress
        run = FlowRun(backend, claim_of(token), stored, rebuild(stored, None), backend.load_tasks(flow_id),
                      replica_id=f"victim{attempt}", max_workers=1)
        found = _attempt(run, PoisonRule(max_takeovers=2))  # counts the claim, as before the build
        assert found is not None
        assert _start(run, plan_resume(run.compiled, stored, run.details), found)
        backend.release(token)
    # victim0 set the progress mark; victim1, victim2 and this run found no progress since
    report = run_once(backend, flow_id, poison=PoisonRule(max_takeovers=2))
    assert report.state == HELD and "taken over 3 times" in (report.reason or "")
    assert ef.CALLS == []
