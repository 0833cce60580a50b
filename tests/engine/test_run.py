"""The run loop on every backend: order, data, parallelism, retries, revert."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.states import FAILURE, REVERTED, SUCCESS
from flowbaton.engine import Gate, register_codec
from tests import engine_flows as ef
from tests.engine.helpers import claim_of, run_once, submit

#: each test runs with plain tasks and again with their async twins
pytestmark = pytest.mark.usefixtures("task_kind")

F = "tests.engine_flows"


def ledger_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_provision_example_runs_and_feeds_results(backend: Backend, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    flow = submit(backend, f"{F}:provision", kwargs={"network": "n1"},
                  inputs={"image": "ubuntu", "ledger": str(ledger)})
    report = run_once(backend, flow.id)
    assert report.state == SUCCESS
    assert report.results == {"reserve-ip": "10.0.0.2", "boot-vm": {"ip": "10.0.0.2", "image": "ubuntu"}}
    stored = backend.load_tasks(flow.id)
    assert {t.state for t in stored.values()} == {SUCCESS}
    assert stored["boot-vm"].version == "2.0" and stored["boot-vm"].attempts == 1
    assert stored["boot-vm"].owner == "r1" and stored["boot-vm"].epoch >= 1
    final = backend.load_flow(flow.id)
    assert final.state == SUCCESS and final.owner is None


def test_graph_orders_by_data_and_links(backend: Backend) -> None:
    flow = submit(backend, f"{F}:graph_flow")
    report = run_once(backend, flow.id)
    assert report.state == SUCCESS
    order = ef.CALLS
    assert order.index("a") < order.index("b") < order.index("d") < order.index("e")
    assert order.index("c") < order.index("d")
    assert report.results["d"] == "y=x=a@1.0+z=x=a@1.0"


def test_independent_tasks_run_in_parallel_within_the_pool_bound(backend: Backend) -> None:
    ef.Sleeper.peak = 0
    flow = submit(backend, f"{F}:parallel", kwargs={"width": 6})
    report = run_once(backend, flow.id, max_workers=3)
    assert report.state == SUCCESS
    assert ef.Sleeper.peak == 3


def test_retry_counts_attempts_and_persists_them(backend: Backend) -> None:
    ef.DEPLOY["succeed_at"] = 3
    flow = submit(backend, f"{F}:flaky", kwargs={"attempts": 5})
    report = run_once(backend, flow.id)
    assert report.state == SUCCESS and report.results["flaky"] == 3
    assert ef.CALLS == ["flaky#1", "flaky#2", "flaky#3"]
    assert backend.load_tasks(flow.id)["flaky"].attempts == 3


def test_retries_exhausted_fail_and_revert(backend: Backend) -> None:
    ef.DEPLOY["succeed_at"] = 10
    flow = submit(backend, f"{F}:flaky", kwargs={"attempts": 2})
    report = run_once(backend, flow.id)
    assert report.state == REVERTED
    assert "ConnectionError" in (report.reason or "")
    detail = backend.load_tasks(flow.id)["flaky"]
    assert detail.attempts == 2 and detail.state == REVERTED
    assert detail.failure is not None and "attempt 2 fails" in detail.failure["message"]


def test_failure_reverts_in_reverse_order(backend: Backend, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    flow = submit(backend, f"{F}:provision_then_fail", kwargs={"network": "n1"},
                  inputs={"image": "ubuntu", "ledger": str(ledger)})
    report = run_once(backend, flow.id)
    assert report.state == REVERTED and "boom" in (report.reason or "")
    events = [(e["event"], e["task"]) for e in ledger_events(ledger)]
    assert events[-2:] == [("revert", "boot-vm"), ("revert", "reserve-ip")]
    stored = backend.load_tasks(flow.id)
    assert stored["explode"].failure and "RuntimeError" in stored["explode"].failure["type"]
    assert {t.state for t in stored.values()} == {REVERTED}


def test_failed_revert_ends_in_failure(backend: Backend) -> None:
    ef.DEPLOY.update(fail=["c"], revert_fail=["b"])
    flow = submit(backend, f"{F}:changing")
    report = run_once(backend, flow.id)
    assert report.state == FAILURE
    assert "revert of 'b' failed" in (report.reason or "")
    assert backend.load_tasks(flow.id)["b"].state == "REVERT_FAILURE"
    assert "revert:a" not in ef.CALLS  # stopped undoing once an undo failed


def test_non_json_result_names_task_and_path(backend: Backend) -> None:
    flow = submit(backend, f"{F}:bad_result")
    report = run_once(backend, flow.id)
    assert report.state == REVERTED
    failure = backend.load_tasks(flow.id)["bad-result"].failure
    assert failure is not None
    assert "task 'bad-result' result['ok'][1]['when']: datetime" in failure["message"]


def test_a_factory_gets_its_arguments_as_given_at_submit_and_at_every_build(backend: Backend) -> None:
    """Stored, a codec type is tagged JSON and a tag-like plain dict is
    escaped; the factory sees neither, on the submitter or on a replica."""
    lookalike = {"__flowbaton_type__": "test-stamp", "value": "not a stamp"}
    flow = submit(backend, f"{F}:stamped", kwargs={"stamp": ef.Stamp("v1"), "spec": lookalike})
    assert flow.kwargs["stamp"] == {"__flowbaton_type__": "test-stamp", "value": "v1"}  # stored form
    assert run_once(backend, flow.id).state == SUCCESS
    seen = [call for call in ef.CALLS if call.startswith("factory:")]
    assert seen == ["factory: Stamp 'v1' ['__flowbaton_type__', 'value']"] * 2  # submit, then the replica's build


def test_a_factory_argument_its_codec_cannot_read_back_is_a_factory_error(backend: Backend) -> None:
    from flowbaton.engine.errors import FactoryError

    with pytest.raises(FactoryError, match="its stored arguments cannot be decoded"):
        submit(backend, f"{F}:stamped", kwargs={"stamp": ef.unreadable_stamp(), "spec": {}})
    assert backend.list_flows() == []


def test_codec_hook_round_trips_a_registered_type(backend: Backend) -> None:
    import datetime

    register_codec(datetime.datetime, "datetime", lambda d: d.isoformat(), datetime.datetime.fromisoformat)
    flow = submit(backend, f"{F}:bad_result")
    report = run_once(backend, flow.id)
    assert report.state == SUCCESS
    assert report.results["bad-result"] == {"ok": [1, {"when": datetime.datetime(2026, 1, 1)}]}
    raw = backend.load_tasks(flow.id)["bad-result"].result
    assert raw["ok"][1]["when"] == {"__flowbaton_type__": "datetime", "value": "2026-01-01T00:00:00"}


def test_two_records_per_task_in_about_one_round_trip(backend: Backend) -> None:
    counts = {"records": 0, "calls": 0, "flow": 0}
    save_task, save_tasks, save_flow = backend.save_task, backend.save_tasks, backend.save_flow

    def count_task(token: Any, detail: Any) -> None:
        counts["records"] += 1
        counts["calls"] += 1
        save_task(token, detail)

    def count_tasks(token: Any, details: Any) -> None:
        counts["records"] += len(details)
        counts["calls"] += 1
        save_tasks(token, details)

    def count_flow(token: Any, flow: Any) -> None:
        counts["flow"] += 1
        save_flow(token, flow)

    backend.save_task = count_task  # type: ignore[method-assign]
    backend.save_tasks = count_tasks  # type: ignore[method-assign]
    backend.save_flow = count_flow  # type: ignore[method-assign]
    flow = submit(backend, f"{F}:steps", kwargs={"count": 50})
    assert run_once(backend, flow.id).state == SUCCESS
    # start + result per task; each result rides with the next start
    assert counts == {"records": 100, "calls": 51, "flow": 2}
    assert {t.state for t in backend.load_tasks(flow.id).values()} == {SUCCESS}


def test_current_task_outside_a_task_is_an_error() -> None:
    from flowbaton.backends.errors import FlowbatonError
    from flowbaton.engine import current_task

    with pytest.raises(FlowbatonError, match="outside a running task"):
        current_task()


@pytest.mark.parametrize("then", ["resume", "lose"])
def test_a_gate_paused_during_a_start_write_holds_the_task(then: str) -> None:
    """The session is suspended while the RUNNING record is being written:
    the task must not start until the claim is confirmed, and never if lost."""
    import threading

    from flowbaton.backends import open_backend
    from flowbaton.engine import Gate, run_flow

    backend = open_backend("memory://")
    gate = Gate()
    save_task = backend.save_task
    paused_at: list[float] = []

    def pausing_save(token: Any, detail: Any) -> None:
        save_task(token, detail)
        if detail.task_id == "b" and detail.state == "RUNNING" and not paused_at:
            gate.pause()
            paused_at.append(1.0)
            settle = gate.resume if then == "resume" else (lambda: gate.lose("session lost"))
            threading.Timer(0.3, settle).start()

    backend.save_task = pausing_save  # type: ignore[method-assign]
    backend.save_tasks = lambda token, details: [pausing_save(token, d) for d in details]  # type: ignore[method-assign]
    flow = submit(backend, f"{F}:changing")
    token = backend.claim(flow.id, "r1", 30.0)
    report = run_flow(backend, claim_of(token, gate), replica_id="r1")
    if then == "resume":
        assert report.state == SUCCESS and ef.CALLS == ["a", "b", "c"]
    else:
        assert ef.CALLS == ["a"]  # b was recorded as started but never ran here
        assert backend.load_tasks(flow.id)["b"].state == "RUNNING"  # in doubt for the next owner


def test_a_finished_run_is_freed_by_reference_counting(backend: Backend) -> None:
    """Nothing of a finished run (its tasks, results, records) waits for the
    cyclic garbage collector, whose full passes pause every thread of the
    process: an asyncio host's loop included. The gate outlives the run."""
    ef.BUILT.clear()
    gate = Gate()
    gc.collect()
    gc.disable()
    try:
        flow = submit(backend, "tests.engine_flows:watched_steps", kwargs={"count": 3})
        assert run_once(backend, flow.id, gate=gate).state == SUCCESS
        assert len(ef.BUILT) >= 3 and all(ref() is None for ref in ef.BUILT)  # built to check at submit, and to run
    finally:
        gc.enable()
