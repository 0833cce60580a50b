"""OpenTelemetry spans of flows and tasks (``pip install 'flowbaton[otel]'``).

Only the API package is needed: spans go wherever the application's
OpenTelemetry SDK sends them (and nowhere, cheaply, without one). One span
per flow run on a replica (``flowbaton.run <flow name>``), one per task
attempt or revert under it (``flowbaton.execute <task id>``,
``flowbaton.revert <task id>``), made current where the task runs so the
task's own spans nest under it. Attributes: ``flowbaton.flow_id``,
``flowbaton.task_id``, ``flowbaton.attempt``, ``flowbaton.epoch``,
``flowbaton.replica_id``, ``flowbaton.in_doubt``, ``flowbaton.factory``.

``submit`` stores the current trace context (W3C ``traceparent`` and
``tracestate``) in the flow record, and every run of the flow is a child
of it: a flow taken over after a crash shows up in the submitter's trace as
a second run by another replica. The stored context is untrusted: anything
but two short strings is ignored (the run then starts a trace of its own).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from ..backends.records import FlowDetail
from ..engine.context import TaskContext
from ..engine.tracing import TRACE_META, NoTracing, install_tracing, tracing

__all__ = ["OpenTelemetryTracing", "install", "MAX_CARRIED", "TRACING_ENV"]

#: ``off`` (or 0, false, no) turns tracing off even with the API installed.
TRACING_ENV = "FLOWBATON_TRACING"

#: Longest stored trace context value taken back (``traceparent`` is 55).
MAX_CARRIED = 512
_KEYS = ("traceparent", "tracestate")


class OpenTelemetryTracing:
    """``engine.tracing.Tracing`` on the OpenTelemetry API."""

    def __init__(self, provider: Any = None) -> None:
        """``provider``: a ``TracerProvider`` (default: the global one)."""
        from opentelemetry import context, propagate, trace

        self._trace, self._propagate, self._context = trace, propagate, context
        self._tracer = trace.get_tracer("flowbaton", tracer_provider=provider)

    def carrier(self) -> dict[str, str] | None:
        carried: dict[str, str] = {}
        self._propagate.inject(carried)
        found = {k: v for k, v in carried.items() if k in _KEYS}
        return found or None

    @contextmanager
    def _run(self, flow: FlowDetail, replica_id: str, epoch: int) -> Iterator[Any]:
        parent = self._context.Context()  # a run is no child of whatever the replica thread was doing
        carried = _carried(flow.meta.get(TRACE_META))
        if carried:
            parent = self._propagate.extract(carried, context=parent)
        attributes: dict[str, str | int | bool] = {"flowbaton.flow_id": flow.id, "flowbaton.factory": flow.factory,
                      "flowbaton.replica_id": replica_id, "flowbaton.epoch": epoch}
        with self._tracer.start_as_current_span(f"flowbaton.run {flow.name}", context=parent,
                                                attributes=attributes) as span:
            yield self._trace.set_span_in_context(span, parent)

    def run(self, flow: FlowDetail, replica_id: str, epoch: int) -> AbstractContextManager[Any]:
        return self._run(flow, replica_id, epoch)

    @contextmanager
    def _attempt(self, parent: Any, ctx: TaskContext, kind: str) -> Iterator[None]:
        attributes: dict[str, str | int | bool] = {"flowbaton.flow_id": ctx.flow_id, "flowbaton.task_id": ctx.task_id,
                      "flowbaton.attempt": ctx.attempt, "flowbaton.epoch": ctx.epoch,
                      "flowbaton.replica_id": ctx.replica_id, "flowbaton.in_doubt": ctx.in_doubt}
        with self._tracer.start_as_current_span(f"flowbaton.{kind} {ctx.task_id}", context=parent,
                                                attributes=attributes):
            yield

    def attempt(self, parent: Any, ctx: TaskContext, kind: str) -> AbstractContextManager[None]:
        return self._attempt(parent, ctx, kind)


def _carried(value: Any) -> dict[str, str] | None:
    """The stored trace context, if it is what ``carrier`` stores."""
    if not isinstance(value, dict):
        return None
    found = {k: v for k, v in value.items() if k in _KEYS and isinstance(v, str) and len(v) <= MAX_CARRIED}
    return found if "traceparent" in found else None


def install() -> bool:
    """Trace with OpenTelemetry if its API is installed (and
    ``FLOWBATON_TRACING`` is not ``off``); whether it does. Idempotent: each
    ``Coordinator`` calls it, so submitters and replicas both trace."""
    if os.environ.get(TRACING_ENV, "").lower() in ("off", "0", "false", "no"):
        install_tracing(NoTracing())
        return False
    if isinstance(tracing(), OpenTelemetryTracing):
        return True
    try:
        tracer = OpenTelemetryTracing()
    except ImportError:
        return False
    install_tracing(tracer)
    return True
