"""One place a replica reports what happens: claims, backend calls, runs.

The claim loop, the lease keeper and the flow workers call this object; it
keeps the health facts the probes judge by (``health.ReplicaHealth``) and,
once metrics are enabled, forwards every event to them. It is also the
engine's ``Events`` observer. Nothing here imports a metrics library, so a
replica without the ``metrics`` extra pays for a few attribute reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..backends.errors import BackendUnavailable, MissingDriver
from .health import ReplicaHealth

if TYPE_CHECKING:
    from flowbaton.observability.metrics import ReplicaMetrics

__all__ = ["ReplicaObserver", "metrics_class"]


def metrics_class() -> type[ReplicaMetrics]:
    """``metrics.ReplicaMetrics``, imported only now: ``prometheus_client``
    is an optional extra, and its absence must say what to install."""
    try:
        from flowbaton.observability.metrics import ReplicaMetrics
    except ImportError as err:
        raise MissingDriver("metrics need prometheus-client: pip install 'flowbaton[metrics]'") from err
    return ReplicaMetrics


class ReplicaObserver:
    """Health facts always; metrics when ``metrics`` is set."""

    def __init__(self, health: ReplicaHealth | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.health = health or ReplicaHealth(clock=clock)
        self.metrics: ReplicaMetrics | None = None
        self._clock = clock
        self._factories: dict[str, str] = {}  # flow id -> factory, while this replica runs the flow

    # ------------------------------------------------------ backend calls

    @contextmanager
    def backend_call(self, operation: str) -> Iterator[None]:
        """Wrap one backend call. ``BackendUnavailable`` marks the backend
        unreachable (and counts an error); any other outcome, including a
        refusal such as ``ClaimHeld``, proves it answered."""
        began = self._clock()
        try:
            yield
        except BackendUnavailable as err:
            self.health.backend_failed(operation, err)
            if self.metrics is not None:
                self.metrics.backend_error(operation)
            raise
        except Exception:
            self.health.backend_ok()
            raise
        self.health.backend_ok()
        if self.metrics is not None:
            self.metrics.backend_call(operation, self._clock() - began)

    def backend_failed(self, operation: str, error: BackendUnavailable) -> None:
        """A call made elsewhere (inside a run) found the backend away."""
        self.health.backend_failed(operation, error)
        if self.metrics is not None:
            self.metrics.backend_error(operation)

    def session_state(self, state: str) -> None:
        self.health.session(state)

    # ------------------------------------------------------------- claims

    def claimed(self, takeover: bool) -> None:
        if self.metrics is not None:
            self.metrics.claimed(takeover)

    def claim_lost(self) -> None:
        if self.metrics is not None:
            self.metrics.claim_lost()

    def declined(self) -> None:
        if self.metrics is not None:
            self.metrics.declined()

    def running(self, flow_id: str, factory: str) -> None:
        """This replica runs ``flow_id`` now, built by ``factory`` (the label
        of its task and flow metrics) until ``ended``."""
        self._factories[flow_id] = factory

    def ended(self, flow_id: str) -> None:
        self._factories.pop(flow_id, None)

    # ------------------------------------------------- engine.events.Events

    def on_task_finished(self, flow_id: str, task_id: str, outcome: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.task_finished(outcome, seconds, self._factories.get(flow_id))

    def on_flow_finished(self, flow_id: str, state: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.flow_finished(state, seconds, self._factories.get(flow_id))

    def on_stuck(self, flow_id: str, task_id: str | None, timeout: float) -> None:
        self.health.stuck(flow_id, task_id, timeout)

    def on_unstuck(self, flow_id: str, task_id: str | None) -> None:
        self.health.unstuck(flow_id, task_id)
