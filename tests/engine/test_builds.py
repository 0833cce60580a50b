"""Builds: a flow never runs on older code than it already ran on."""

from __future__ import annotations

import time

import pytest

from flowbaton.backends.base import Backend
from flowbaton.backends.errors import CorruptRecord
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.states import SUCCESS
from flowbaton.engine import Claim, new_flow_detail, run_flow
from flowbaton.engine.builds import BuildTooOld, check_build, checked_build, default_build, newest_build
from flowbaton.engine.gate import Gate
from flowbaton.engine.meta import FlowMeta

#: each test runs with plain tasks and again with their async twins
pytestmark = pytest.mark.usefixtures("task_kind")

FACTORY = "tests.engine_flows:steps"


def test_a_build_is_a_pep_440_version() -> None:
    assert checked_build("2.1.0rc1", "--build") == "2.1.0rc1" and checked_build(None, "--build") is None
    with pytest.raises(ValueError, match=r"--build: 'two' is not a PEP 440 version"):
        checked_build("two", "--build")


def test_the_newest_build_wins_by_pep_440_order_not_by_text() -> None:
    assert newest_build("2.9", "2.10", "f") == "2.10"
    assert newest_build("2.10", "2.9", "f") == "2.10"
    assert newest_build("2.0rc1", "2.0", "f") == "2.0"
    assert newest_build(None, "1.0", "f") == "1.0" and newest_build("1.0", None, "f") == "1.0"


def test_an_older_build_is_refused_unless_an_operator_allowed_it() -> None:
    ran_on_21 = FlowMeta({"build": "2.1"})
    with pytest.raises(BuildTooOld, match=r"flow last ran on build 2.1; this replica runs 2.0"):
        check_build("f", ran_on_21, "2.0")
    check_build("f", ran_on_21, "2.1")
    check_build("f", ran_on_21, "3.0")
    check_build("f", ran_on_21, None)  # unset: today's behaviour
    check_build("f", FlowMeta(), "1.0")  # a flow from before builds
    check_build("f", ran_on_21.allowing_build("2.0"), "2.0")
    with pytest.raises(BuildTooOld):
        check_build("f", ran_on_21.allowing_build("2.0"), "1.9")


def test_a_stored_build_that_is_not_a_version_is_a_corrupt_record() -> None:
    with pytest.raises(CorruptRecord, match=r"meta\.build"):
        check_build("f", FlowMeta({"build": "<script>"}), "1.0")


def test_the_default_build_is_the_version_of_the_distribution_of_the_factories() -> None:
    from flowbaton import __version__

    assert default_build(["flowbaton.demo.flows"]) == __version__
    assert default_build(["flowbaton.demo.flows:provision", "flowbaton."]) == __version__
    assert default_build(["tests."]) is None  # a source tree, no distribution
    assert default_build(["flowbaton.", "tests."]) is None  # two owners: no single answer
    assert default_build(None) is None and default_build([]) is None


def _run(store: Backend, flow_id: str, build: str | None) -> str:
    token = store.claim(flow_id, f"r-{build}", 30.0)
    try:
        return run_flow(store, Claim(token, Gate(), time.monotonic()), replica_id=f"r-{build}", allow=["tests."],
                        build=build).state
    finally:
        store.release(token)


def test_a_replica_of_an_older_build_declines_writing_nothing() -> None:
    store = MemoryBackend()
    detail = new_flow_detail(FACTORY, kwargs={"count": 3}, build="2.0")
    store.create_flow(detail)
    before = store.load_flow(detail.id).to_json()
    with pytest.raises(BuildTooOld):
        _run(store, detail.id, "1.0")
    assert store.load_flow(detail.id).to_json() == before and store.load_tasks(detail.id) == {}


def test_each_claim_leaves_the_newest_build_and_unset_builds_run_as_before() -> None:
    store = MemoryBackend()
    detail = new_flow_detail(FACTORY, kwargs={"count": 3})
    assert "build" not in detail.meta  # unset: the record is as before builds existed
    store.create_flow(detail)
    assert _run(store, detail.id, None) == SUCCESS
    assert FlowMeta(store.load_flow(detail.id).meta).build is None
    newer = new_flow_detail(FACTORY, kwargs={"count": 3}, build="2.0")
    store.create_flow(newer)
    assert _run(store, newer.id, "2.1") == SUCCESS
    assert FlowMeta(store.load_flow(newer.id).meta).build == "2.1"


def test_flowbaton_run_records_its_build_and_never_resumes_newer_flows_on_older_code() -> None:
    import flowbaton

    store = MemoryBackend()
    report = flowbaton.run(FACTORY, kwargs={"count": 2}, backend=store, flow_id="mine", build="2.0")
    assert report.state == SUCCESS and FlowMeta(store.load_flow("mine").meta).build == "2.0"
    newer = new_flow_detail(FACTORY, kwargs={"count": 2}, flow_id="newer", build="3.0")
    store.create_flow(newer)
    with pytest.raises(BuildTooOld, match=r"flow last ran on build 3\.0; this replica runs 2\.0"):
        flowbaton.run(FACTORY, kwargs={"count": 2}, backend=store, flow_id="newer", build="2.0")
    assert store.load_tasks("newer") == {} and store.current_claim("newer") is None
    assert flowbaton.run(FACTORY, kwargs={"count": 2}, backend=store, flow_id="newer", build=None).state == SUCCESS
