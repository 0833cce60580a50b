"""``async def`` tasks on every backend: they run beside sync tasks with the
same persistence, retries and reverts; a lost claim, a lease that ran out
and a timeout each cancel a running async call, which is never recorded as
finished; what cannot be async says so when it is defined."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.errors import DefinitionError
from flowbaton.backends.states import REVERTED, RUNNING, SUCCESS
from flowbaton.coordinator.lease import LeasedGate
from flowbaton.engine import Claim, Gate, Linear, Task, run_flow, task
from flowbaton.engine.errors import FactoryError
from tests import async_flows as af
from tests.engine.helpers import fake_crash, run_once, submit

A = "tests.async_flows"
ALLOW = ["tests."]


@pytest.fixture(autouse=True)
def fresh_probe() -> Iterator[None]:
    af.reset()
    yield
    af.reset()


def test_sync_and_async_tasks_run_in_one_flow(backend: Backend) -> None:
    flow = submit(backend, f"{A}:mixed", kwargs={"start": 20})
    report = run_once(backend, flow.id, allow=ALLOW)
    assert report.state == SUCCESS
    assert report.results == {"sync-first": 21, "async-double": 42, "async-label": "v42"}
    stored = backend.load_tasks(flow.id)
    assert {t: d.state for t, d in stored.items()} == dict.fromkeys(stored, SUCCESS)
    assert af.PROBE.seen("execute") == [("sync-first", 1), ("async-double", 1), ("async-label", 1)]


def test_async_reverts_run_when_a_later_task_fails(backend: Backend) -> None:
    flow = submit(backend, f"{A}:mixed_then_fail", kwargs={"start": 1})
    report = run_once(backend, flow.id, allow=ALLOW)
    assert report.state == REVERTED
    assert sorted(af.PROBE.seen("revert")) == [("async-double", 1), ("async-label", 1)]


def _run_in_thread(backend: Backend, flow_id: str, gate: Gate) -> threading.Thread:
    token = backend.claim(flow_id, "r1", 30.0)
    thread = threading.Thread(target=lambda: run_flow(backend, Claim(token, gate, time.monotonic()),
                                                      replica_id="r1", allow=ALLOW), daemon=True)
    thread.start()
    return thread


def test_a_lost_claim_cancels_the_async_call_and_records_nothing_finished(backend: Backend) -> None:
    flow = submit(backend, f"{A}:waiting", kwargs={"seconds": 60.0})
    gate = Gate()
    thread = _run_in_thread(backend, flow.id, gate)
    assert af.PROBE.started.wait(10), "the async task never started"
    gate.lose("claim lost (test)")
    thread.join(10)
    assert not thread.is_alive(), "the run did not end after the claim was lost"
    assert af.PROBE.seen("cancelled") == [("waits", 1)] and af.PROBE.seen("unwound") == [("waits", 1)]
    detail = backend.load_tasks(flow.id)["waits"]
    assert (detail.state, detail.result) == (RUNNING, None)  # in doubt for the next owner, never finished


def test_a_lease_that_ran_out_cancels_the_async_call_without_a_renewal_failing(backend: Backend) -> None:
    flow = submit(backend, f"{A}:waiting", kwargs={"seconds": 60.0})
    gate = LeasedGate()
    gate.deadline = time.monotonic() + 1.5  # nobody renews: the lease runs out while the task awaits
    thread = _run_in_thread(backend, flow.id, gate)
    assert af.PROBE.started.wait(10), "the async task never started"
    thread.join(15)
    assert not thread.is_alive() and gate.lost
    assert af.PROBE.seen("cancelled") == [("waits", 1)]
    assert backend.load_tasks(flow.id)["waits"].state == RUNNING


def test_a_timeout_cancels_the_async_call_and_the_retry_starts_after_it_unwound(backend: Backend) -> None:
    flow = submit(backend, f"{A}:waiting_with_timeout", kwargs={"seconds": 60.0, "timeout": 0.3})
    started = time.monotonic()
    report = run_once(backend, flow.id, allow=ALLOW)
    assert report.state == SUCCESS and report.results == {"waits": "attempt 2"}
    assert time.monotonic() - started < 30  # not the 60 s the first attempt would have slept
    with af.PROBE.lock:
        order = [(what, attempt) for what, _, attempt in af.PROBE.events]
    assert order == [("execute", 1), ("cancelled", 1), ("unwound", 1), ("execute", 2), ("unwound", 2)]


def test_a_mixed_flow_resumes_an_async_task_in_doubt(backend: Backend) -> None:
    flow = submit(backend, f"{A}:mixed", kwargs={"start": 2})
    fake_crash(backend, flow.id, {"sync-first": 3}, "async-double")
    report = run_once(backend, flow.id, allow=ALLOW)
    assert report.state == SUCCESS and report.results["async-label"] == "v6"
    assert af.PROBE.seen("execute") == [("async-double", 2), ("async-label", 1)]


def test_what_cannot_be_async_is_refused_when_defined() -> None:
    async def gen():  # type: ignore[no-untyped-def]
        yield 1

    with pytest.raises(DefinitionError, match="async generator"):
        task(gen)

    class Streams(Task):
        async def execute(self):  # type: ignore[no-untyped-def]
            yield 1

    with pytest.raises(DefinitionError, match="async generator"):
        Streams()

    async def migrate(result: object) -> object:
        return result

    with pytest.raises(DefinitionError, match=r"on_version_change .* is async"):
        task(lambda: None, id="x", on_version_change=migrate)


async def async_factory() -> Linear:
    return Linear("never")


def test_an_async_factory_is_refused_at_submit(backend: Backend) -> None:
    with pytest.raises(FactoryError, match="async def"):
        submit(backend, "tests.engine.test_async:async_factory")
    with pytest.raises(FactoryError, match="async def"):
        submit(backend, async_factory)


def test_an_async_factory_or_codec_is_refused_when_marked_or_registered() -> None:
    import flowbaton

    with pytest.raises(FactoryError, match="async def"):
        flowbaton.factory(async_factory)

    async def to_json(value: object) -> object:
        return value

    with pytest.raises(ValueError, match="to_json is async def"):
        flowbaton.register_codec(complex, "complex-async", to_json, lambda raw: raw)
