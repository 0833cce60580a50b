"""Contract: task details (fenced save, load, awkward ids and values)."""

from __future__ import annotations

import threading

import pytest

from flowbaton.backends import Backend, ClaimToken
from flowbaton.backends.states import FAILURE, RUNNING, SUCCESS

from .helpers import AWKWARD_JSON, LEASE, make_flow, make_task

AWKWARD_IDS = [
    "plain",
    "pkg.module.Class.method",
    "a/b/c",
    "/leading/slash",
    "trailing/",
    "..",
    ".",
    "../../etc/passwd",
    "with space",
    "tab\tand\nnewline",
    "ünïcødé ✓ 𝄞",
    "colon:{brace}:}{",
    "percent%2Fencoded",
    "hash#star*question?",
    "back\\slash",
    "x" * 1000,
]


@pytest.fixture
def claimed(backend: Backend) -> ClaimToken:
    backend.create_flow(make_flow("f"))
    return backend.claim("f", "r1", LEASE)


def test_new_flow_has_no_tasks(backend: Backend) -> None:
    backend.create_flow(make_flow("f"))
    assert backend.load_tasks("f") == {}


def test_awkward_task_ids_round_trip(backend: Backend, claimed: ClaimToken) -> None:
    for n, task_id in enumerate(AWKWARD_IDS):
        backend.save_task(claimed, make_task(task_id, attempts=n))
    loaded = backend.load_tasks("f")
    assert sorted(loaded) == sorted(AWKWARD_IDS)
    for n, task_id in enumerate(AWKWARD_IDS):
        assert loaded[task_id].task_id == task_id
        assert loaded[task_id].attempts == n


def test_every_field_and_json_value_survives(backend: Backend, claimed: ClaimToken) -> None:
    task = make_task(
        "t", state=FAILURE, result=AWKWARD_JSON, version="2.7", attempts=3,
        failure={"type": "ValueError", "message": "bad ✓", "traceback": "line\n" * 50},
        started_at=1700000000.25, finished_at=1700000009.5, owner="r1",
        claim_id="r1#abc", epoch=4, meta={"idempotency": "f/t", "n": [1, 2]},
    )
    backend.save_task(claimed, task)
    assert backend.load_tasks("f") == {"t": task}


@pytest.mark.parametrize("result", [None, 0, "", [], {}, "s", 1.5, [None], {"": ""}])
def test_simple_results_survive(backend: Backend, claimed: ClaimToken, result: object) -> None:
    backend.save_task(claimed, make_task("t", state=SUCCESS, result=result))
    assert backend.load_tasks("f")["t"].result == result


def test_large_result_survives(backend: Backend, claimed: ClaimToken) -> None:
    result = {"rows": ["x" * 100] * 2000}  # about 200 kB, under every backend's cap
    backend.save_task(claimed, make_task("t", result=result))
    assert backend.load_tasks("f")["t"].result == result


def test_second_save_replaces(backend: Backend, claimed: ClaimToken) -> None:
    backend.save_task(claimed, make_task("t", state=RUNNING, attempts=1, result="a"))
    done = make_task("t", state=SUCCESS, attempts=1, result={"b": 2})
    backend.save_task(claimed, done)
    assert backend.load_tasks("f") == {"t": done}


def test_tasks_belong_to_their_flow(backend: Backend) -> None:
    for flow_id in ("f", "g"):
        backend.create_flow(make_flow(flow_id))
    token_f = backend.claim("f", "r1", LEASE)
    token_g = backend.claim("g", "r1", LEASE)
    backend.save_task(token_f, make_task("same", result="f"))
    backend.save_task(token_g, make_task("same", result="g"))
    assert backend.load_tasks("f")["same"].result == "f"
    assert backend.load_tasks("g")["same"].result == "g"


def test_concurrent_saves_from_threads_all_land(backend: Backend, claimed: ClaimToken) -> None:
    """One backend object shared by a runner's worker threads."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                backend.save_task(claimed, make_task(f"w{n}-t{i}", attempts=i))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(backend.load_tasks("f")) == 8 * 25


def test_save_tasks_writes_all_in_one_go(backend: Backend, claimed: ClaimToken) -> None:
    backend.save_task(claimed, make_task("a", state=RUNNING))
    batch = [make_task("a", state=SUCCESS, result={"n": 1}), make_task("b/c d", state=RUNNING, attempts=2)]
    backend.save_tasks(claimed, batch)
    stored = backend.load_tasks("f")
    assert stored["a"].state == SUCCESS and stored["a"].result == {"n": 1}
    assert stored["b/c d"].state == RUNNING and stored["b/c d"].attempts == 2
    backend.save_tasks(claimed, [make_task("b/c d", state=SUCCESS, result=None)])
    backend.save_tasks(claimed, [])
    assert backend.load_tasks("f")["b/c d"].state == SUCCESS


@pytest.mark.parametrize("state", [RUNNING, SUCCESS])
def test_save_run_writes_tasks_and_flow_together(backend: Backend, claimed: ClaimToken, state: str) -> None:
    """Task records and the flow record in one call; the runnable index
    follows the flow's state as with ``save_flow``."""
    backend.save_task(claimed, make_task("a", state=RUNNING))
    flow = backend.load_flow("f")
    flow.state, flow.meta = state, {"resume": {"added": ["b/c d"]}}
    backend.save_run(claimed, [make_task("a", state=SUCCESS, result=1), make_task("b/c d", state=RUNNING)], flow)
    stored = backend.load_tasks("f")
    assert (stored["a"].state, stored["a"].result, stored["b/c d"].state) == (SUCCESS, 1, RUNNING)
    assert backend.load_flow("f") == flow
    backend.release(claimed)
    assert backend.find_runnable(10) == (["f"] if state == RUNNING else [])


def test_save_run_too_large_for_one_request_goes_in_order(backend: Backend, claimed: ClaimToken) -> None:
    """Records that together pass ``max_record_bytes`` still land (several
    fenced writes, tasks first)."""
    big = "x" * (backend.max_record_bytes // 2)
    flow = backend.load_flow("f")
    flow.reason = "after the tasks"
    backend.save_run(claimed, [make_task("a", result=big), make_task("b", result=big)], flow)
    assert {t: d.result for t, d in backend.load_tasks("f").items()} == {"a": big, "b": big}
    assert backend.load_flow("f").reason == "after the tasks"
