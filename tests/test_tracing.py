"""OpenTelemetry spans (``observability.tracing``) with the SDK's in-memory
exporter: a run joins the submitter's trace, each attempt is a child of the
run with the documented attributes, a task's own spans nest under its
attempt (sync and async), and a hostile stored context is ignored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.states import SUCCESS
from flowbaton.engine.tracing import TRACE_META, NoTracing, install_tracing, tracing
from flowbaton.observability.tracing import OpenTelemetryTracing
from tests import trace_flows
from tests.coordinator.inprocess import LocalReplicas

TRACED = "tests.trace_flows:traced"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InMemorySpanExporter, TracerProvider]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before = tracing()
    install_tracing(OpenTelemetryTracing(provider))
    # a Coordinator installs the global tracing: keep ours for the test
    monkeypatch.setattr("flowbaton.coordinator.replica.install_tracing", lambda: True)
    try:
        yield exporter, provider
    finally:
        install_tracing(before)


def _named(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def test_a_run_joins_the_submitters_trace_and_attempts_nest_under_it(
    spans: tuple[InMemorySpanExporter, TracerProvider], local_replicas: LocalReplicas
) -> None:
    exporter, provider = spans
    backend = MemoryBackend()
    coord = local_replicas.add(backend, replica_id="r-trace")
    with provider.get_tracer("submitter").start_as_current_span("handle request") as request:
        flow_id = coord.submit(TRACED)
    stored = backend.load_flow(flow_id).meta[TRACE_META]
    assert f"{request.get_span_context().trace_id:032x}" in stored["traceparent"]
    coord.start()
    assert coord.wait(flow_id, timeout=20).state == SUCCESS

    named = _named(exporter)
    run = named["flowbaton.run traced"]
    assert run.parent is not None and run.parent.span_id == request.get_span_context().span_id
    assert run.context.trace_id == request.get_span_context().trace_id
    assert run.attributes is not None and run.attributes["flowbaton.flow_id"] == flow_id
    assert run.attributes["flowbaton.replica_id"] == "r-trace"
    for task_id in ("sync", "async"):
        attempt = named[f"flowbaton.execute {task_id}"]
        assert attempt.parent is not None and attempt.parent.span_id == run.context.span_id
        assert attempt.attributes is not None
        assert {k: attempt.attributes[k] for k in ("flowbaton.flow_id", "flowbaton.task_id", "flowbaton.attempt",
                                                   "flowbaton.replica_id", "flowbaton.in_doubt")} == {
            "flowbaton.flow_id": flow_id, "flowbaton.task_id": task_id, "flowbaton.attempt": 1,
            "flowbaton.replica_id": "r-trace", "flowbaton.in_doubt": False}
        assert attempt.attributes["flowbaton.epoch"] == run.attributes["flowbaton.epoch"]
        assert trace_flows.SEEN[task_id] == attempt.context.span_id  # the task's own spans nest here


@pytest.mark.parametrize("hostile", [{"traceparent": "x" * 100_000}, {"traceparent": 7}, "not a dict",
                                     {"traceparent": "00-zz-zz-01"}])
def test_a_hostile_stored_context_starts_a_trace_of_its_own(
    spans: tuple[InMemorySpanExporter, TracerProvider], local_replicas: LocalReplicas, hostile: object
) -> None:
    exporter, _ = spans
    backend = MemoryBackend()
    coord = local_replicas.add(backend)
    flow_id = coord.submit(TRACED)
    flow = backend.load_flow(flow_id)
    token = backend.claim(flow_id, "planter", 10.0)
    flow.meta = {**flow.meta, TRACE_META: hostile}
    backend.save_flow(token, flow)
    backend.release(token)
    coord.start()
    assert coord.wait(flow_id, timeout=20).state == SUCCESS
    assert _named(exporter)["flowbaton.run traced"].parent is None


def test_without_tracing_nothing_is_stored() -> None:
    before = tracing()
    install_tracing(NoTracing())
    try:
        from flowbaton.engine import new_flow_detail

        assert TRACE_META not in new_flow_detail(TRACED).meta
    finally:
        install_tracing(before)
