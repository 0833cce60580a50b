"""Contract: flow records (create, load, list, delete)."""

from __future__ import annotations

import time

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.errors import ClaimLost, FlowExists, FlowNotFound
from flowbaton.backends.records import FlowDetail
from flowbaton.backends.states import FLOW_STATES, HELD, PENDING, RUNNING, SUCCESS

from .helpers import AWKWARD_JSON, LEASE, make_flow, make_task


def test_create_then_load_round_trips_every_field(backend: Backend) -> None:
    flow = make_flow(
        args=[1, "two", AWKWARD_JSON], kwargs={"k": AWKWARD_JSON}, inputs=dict(AWKWARD_JSON),
        meta={"resume": {"added": ["x"]}}, reason="why", owner="r1", epoch=3,
        created_at=1700000000.123456, updated_at=1700000001.5,
    )
    backend.create_flow(flow)
    assert backend.load_flow(flow.id) == flow


def test_create_existing_id_raises_and_keeps_the_first(backend: Backend) -> None:
    first = make_flow("f", inputs={"v": 1})
    backend.create_flow(first)
    with pytest.raises(FlowExists):
        backend.create_flow(make_flow("f", inputs={"v": 2}))
    assert backend.load_flow("f") == first


def test_missing_flow_raises_flow_not_found(backend: Backend) -> None:
    with pytest.raises(FlowNotFound):
        backend.load_flow("nope")
    with pytest.raises(FlowNotFound):
        backend.load_tasks("nope")
    with pytest.raises(FlowNotFound):
        backend.claim("nope", "r1", LEASE)


def test_list_flows_oldest_first(backend: Backend) -> None:
    # Created with decreasing timestamps: the order is creation order in the
    # store, not the record's clock (replicas' clocks differ).
    ids = [f"flow-{n}" for n in (3, 1, 2, 10, 0)]
    for n, flow_id in enumerate(ids):
        backend.create_flow(make_flow(flow_id, created_at=1000.0 - n))
    assert [f.id for f in backend.list_flows()] == ids


def test_list_flows_empty_store(backend: Backend) -> None:
    assert backend.list_flows() == []
    assert backend.find_runnable(10) == []
    assert backend.list_claims() == []


def test_list_flows_filters_by_state(backend: Backend) -> None:
    for flow_id in ("a", "b", "c", "d"):
        backend.create_flow(make_flow(flow_id))
    for flow_id, state in (("b", SUCCESS), ("c", HELD)):
        token = backend.claim(flow_id, "r1", LEASE)
        backend.save_flow(token, make_flow(flow_id, state=state))
    assert [f.id for f in backend.list_flows(states={PENDING})] == ["a", "d"]
    assert [f.id for f in backend.list_flows(states=[SUCCESS, HELD])] == ["b", "c"]
    assert backend.list_flows(states=[RUNNING]) == []
    assert backend.list_flows(states=()) == []
    assert len(backend.list_flows(states=FLOW_STATES)) == 4


def test_save_flow_replaces_the_record(backend: Backend) -> None:
    backend.create_flow(make_flow("f"))
    token = backend.claim("f", "r1", LEASE)
    updated = make_flow("f", state=RUNNING, owner="r1", epoch=token.epoch, meta={"m": [1]})
    backend.save_flow(token, updated)
    assert backend.load_flow("f") == updated
    assert [f.state for f in backend.list_flows()] == [RUNNING]


def test_delete_flow_removes_flow_tasks_declines_and_claim(backend: Backend) -> None:
    from flowbaton.backends.records import Decline

    backend.create_flow(make_flow("f"))
    backend.create_flow(make_flow("f-other"))
    backend.record_decline("f", Decline("r2", "no code", 1.0))
    token = backend.claim("f", "r1", LEASE)
    backend.save_task(token, make_task("t"))
    backend.delete_flow(token)
    with pytest.raises(FlowNotFound):
        backend.load_flow("f")
    assert backend.current_claim("f") is None
    assert [f.id for f in backend.list_flows()] == ["f-other"]
    assert backend.find_runnable(10) == ["f-other"]
    _recreated_is_empty(backend)


def _recreated_is_empty(backend: Backend) -> None:
    """Nothing of a deleted flow leaks into a new flow with the same id."""
    backend.create_flow(make_flow("f"))
    assert backend.load_tasks("f") == {}
    assert backend.load_declines("f") == []
    token = backend.claim("f", "r3", LEASE)
    assert token.epoch >= 1
    assert backend.current_claim("f") is not None


def test_delete_flow_with_stale_token_changes_nothing(backend: Backend) -> None:
    backend.create_flow(make_flow("f"))
    stale = backend.claim("f", "r1", LEASE)
    backend.save_task(stale, make_task("t"))
    backend.release(stale)
    with pytest.raises(ClaimLost):
        backend.delete_flow(stale)
    assert backend.load_flow("f").id == "f"
    assert set(backend.load_tasks("f")) == {"t"}


def test_flows_are_independent_of_similar_ids(backend: Backend) -> None:
    """Ids that prefix each other must not share keys (globs, prefixes)."""
    for flow_id in ("f1", "f10", "f1x"):
        backend.create_flow(make_flow(flow_id))
        token = backend.claim(flow_id, "r1", LEASE)
        backend.save_task(token, make_task(f"task-of-{flow_id}"))
    assert set(backend.load_tasks("f1")) == {"task-of-f1"}
    token = backend.claim("f1", "r2", LEASE, force=True)
    backend.delete_flow(token)
    assert set(backend.load_tasks("f10")) == {"task-of-f10"}
    assert [f.id for f in backend.list_flows()] == ["f10", "f1x"]


def test_load_flow_returns_a_fresh_object(backend: Backend) -> None:
    flow = make_flow("f", inputs={"a": [1]})
    backend.create_flow(flow)
    flow.inputs["a"].append(2)  # mutating the caller's object changes nothing stored
    loaded: FlowDetail = backend.load_flow("f")
    assert loaded.inputs == {"a": [1]}


def test_load_runs_reads_claimed_flows_with_their_tasks(backend: Backend) -> None:
    """What ``load_flow`` and ``load_tasks`` return, for many flows at once;
    a flow that is gone is left out, not raised. Drivers that read cheaply
    one by one return nothing (each worker reads its own flow)."""
    ids = [f"run-{n}" for n in range(5)]
    for flow_id in ids:
        backend.create_flow(make_flow(flow_id))
    token = backend.claim(ids[1], "r1", LEASE)
    backend.save_tasks(token, [make_task("a", state=SUCCESS, result=1), make_task("b/ü", state=RUNNING)])
    found = backend.load_runs([*ids, "gone"])
    if type(backend).load_runs is Backend.load_runs:
        assert found == {}
        return
    assert list(found) == ids
    for flow_id in ids:
        assert found[flow_id].flow == backend.load_flow(flow_id)
        assert found[flow_id].tasks == backend.load_tasks(flow_id)
    assert set(found[ids[1]].tasks) == {"a", "b/ü"}
    # The driver knows the task records exist: the next save replaces them.
    backend.save_tasks(token, [make_task("b/ü", state=SUCCESS, result=2)])
    assert backend.load_tasks(ids[1])["b/ü"].result == 2


def test_flow_ids_by_prefix(backend: Backend) -> None:
    """How an operator's short id is resolved: from the index of ids, any
    characters (a glob character in an id matches only itself)."""
    for flow_id in ("abc-1", "abc-2", "abd", "x*y1", "xay", "[a]1", "a", "ab\\c"):
        backend.create_flow(make_flow(flow_id))
    assert sorted(backend.flow_ids("abc", 10)) == ["abc-1", "abc-2"]
    assert sorted(backend.flow_ids("ab", 10)) == ["ab\\c", "abc-1", "abc-2", "abd"]
    assert backend.flow_ids("x*", 10) == ["x*y1"] and backend.flow_ids("[a]", 10) == ["[a]1"]
    assert backend.flow_ids("ab\\", 10) == ["ab\\c"]
    assert len(backend.flow_ids("a", 2)) == 2 and backend.flow_ids("zz", 10) == []
    assert sorted(backend.flow_ids("", 100)) == sorted(["abc-1", "abc-2", "abd", "x*y1", "xay", "[a]1", "a", "ab\\c"])


def test_pages_of_flows(backend: Backend) -> None:
    """Pages, cursor to cursor, are the listing: oldest first, each flow once."""
    from flowbaton.backends.errors import BadCursor

    for index in range(7):
        backend.create_flow(make_flow(f"p{index}"))
        time.sleep(0.002)  # distinct creation times, for drivers that order by them
    token = backend.claim("p3", "r1", LEASE)
    backend.save_flow(token, make_flow("p3", state="SUCCESS"))
    everything = [f.id for f in backend.list_flows()]

    def pages(states: list[str] | None, size: int) -> list[list[str]]:
        found, cursor = [], None
        while True:
            page, cursor = backend.page_flows(states, cursor, size)
            found.append([f.id for f in page])
            if cursor is None:
                return found
            assert len(found) < 20, "the cursor does not move on"

    assert [f for page in pages(None, 3) for f in page] == everything and len(everything) == 7
    assert all(len(page) <= 3 for page in pages(None, 3))
    assert [f for page in pages(["PENDING"], 2) for f in page] == [f for f in everything if f != "p3"]
    assert pages(["SUCCESS"], 5) == [["p3"]]
    assert backend.page_flows(None, None, 100) == (backend.list_flows(), None)
    for bad in ("x", "-1", "1; DROP TABLE flows", "9" * 40):
        with pytest.raises(BadCursor):
            backend.page_flows(None, bad, 3)
