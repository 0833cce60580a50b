"""Where a run tells a tracer about itself, without importing one.

The engine marks three moments: a submit (whose trace context the flow
record carries, so the run joins the submitter's trace), a flow run on one
replica, and each task attempt or revert (in the thread or coroutine that
runs it, so spans the task makes itself nest under it). What happens then
is the installed ``Tracing``'s business: none by default, OpenTelemetry
once ``flowbaton.observability.tracing.install()`` found it (a replica does
at start). Keeping the hook here lets the engine stay free of optional
imports and costs a no-op call per task when nobody traces.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Protocol

from ..backends.records import FlowDetail
from .context import TaskContext

__all__ = ["Tracing", "NoTracing", "install_tracing", "tracing", "traced_attempt", "TRACE_META"]

#: ``flow.meta`` key of the submitter's trace context (W3C ``traceparent``
#: and ``tracestate``): untrusted like any record, checked before use.
TRACE_META = "trace"


class Tracing(Protocol):
    def carrier(self) -> dict[str, str] | None:
        """The current trace context to store with a new flow, if any."""

    def run(self, flow: FlowDetail, replica_id: str, epoch: int) -> AbstractContextManager[Any]:
        """Around one run of ``flow`` on this replica; yields the parent of its task spans."""

    def attempt(self, parent: Any, ctx: TaskContext, kind: str) -> AbstractContextManager[None]:
        """Around one task call (``kind``: "execute" or "revert"), in the thread or coroutine running it."""


class NoTracing:
    """The default: nothing is traced."""

    def carrier(self) -> dict[str, str] | None:
        return None

    def run(self, flow: FlowDetail, replica_id: str, epoch: int) -> AbstractContextManager[Any]:
        return nullcontext()

    def attempt(self, parent: Any, ctx: TaskContext, kind: str) -> AbstractContextManager[None]:
        return nullcontext()


_installed: list[Tracing] = [NoTracing()]


def install_tracing(tracer: Tracing) -> None:
    """Make ``tracer`` the process's tracing (once per process is enough)."""
    _installed[0] = tracer


def tracing() -> Tracing:
    return _installed[0]


@contextmanager
def traced_attempt(parent: Any, ctx: TaskContext | None, kind: str) -> Iterator[None]:
    """``tracing().attempt`` for a task call; nothing for a call without context."""
    if ctx is None:
        yield
        return
    with tracing().attempt(parent, ctx, kind):
        yield
