"""Prometheus metrics of one replica (``pip install 'flowbaton[metrics]'``).

Each replica object gets its own ``CollectorRegistry`` unless it is handed
one: a process may hold several replicas (tests, or a service that runs a
replica per tenant) and Prometheus' global registry refuses a second set of
the same names. Import this module only through ``load_metrics``, which
turns a missing ``prometheus_client`` into an error saying what to install.

Label values are bounded on purpose: outcomes, end states and backend
operation names, never flow or task ids (one series per flow would grow
without limit).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..backends.states import FAILURE, HELD, REVERTED, SUCCESS
from ..engine.events import TASK_OUTCOMES

__all__ = ["ReplicaMetrics", "METRIC_NAMES"]

_TASK_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_FLOW_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
_RENEW_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: Every metric family this module exports (counters without ``_total``).
METRIC_NAMES = (
    "flowbaton_flows_claimed",
    "flowbaton_takeovers",
    "flowbaton_claims_lost",
    "flowbaton_declines",
    "flowbaton_tasks",
    "flowbaton_task_duration_seconds",
    "flowbaton_flow_duration_seconds",
    "flowbaton_lease_renewal_seconds",
    "flowbaton_backend_errors",
    "flowbaton_flows_running",
    "flowbaton_replica_ready",
    "flowbaton_replica_info",
)


class ReplicaMetrics:
    """The counters, histograms and gauges; methods named after events."""

    def __init__(self, replica_id: str, version: str, registry: CollectorRegistry | None = None,
                 build: str | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        self._claimed = Counter("flowbaton_flows_claimed", "Flows claimed by this replica, takeovers included",
                                registry=reg)
        self._takeovers = Counter("flowbaton_takeovers", "Claims of flows whose previous owner never released them",
                                  registry=reg)
        self._lost = Counter("flowbaton_claims_lost", "Runs that ended because the claim was lost (fenced, "
                             "session gone, lease not renewed in time)", registry=reg)
        self._declines = Counter("flowbaton_declines", "Flows this replica declined (factory not allowed or "
                                 "not importable)", registry=reg)
        self._tasks = Counter("flowbaton_tasks", "Task executions and reverts by outcome", ["outcome"], registry=reg)
        self._task_seconds = Histogram("flowbaton_task_duration_seconds", "Duration of one task attempt or revert",
                                       ["outcome"], buckets=_TASK_BUCKETS, registry=reg)
        self._flow_seconds = Histogram("flowbaton_flow_duration_seconds", "Seconds from submission to the end "
                                       "state, observed by the replica that ended the flow", ["state"],
                                       buckets=_FLOW_BUCKETS, registry=reg)
        self._renewals = Histogram("flowbaton_lease_renewal_seconds", "Round trip of one claim renewal",
                                   buckets=_RENEW_BUCKETS, registry=reg)
        self._backend_errors = Counter("flowbaton_backend_errors", "Backend calls that failed with "
                                       "BackendUnavailable after the driver's retries", ["operation"], registry=reg)
        self._running = Gauge("flowbaton_flows_running", "Flows this replica runs now", registry=reg)
        self._ready = Gauge("flowbaton_replica_ready", "1 while /readyz answers 200", registry=reg)
        info = Gauge("flowbaton_replica_info", "Constant 1, labelled with the replica's id, flowbaton's "
                     "version and the build of the service's code (empty: unset)",
                     ["replica_id", "version", "build"], registry=reg)
        info.labels(replica_id, version, build or "").set(1)
        self._zero_series()

    def _zero_series(self) -> None:
        # Series that exist from the start read as 0 instead of "no data",
        # so rate() and alerts work before the first event.
        for outcome in TASK_OUTCOMES:
            self._tasks.labels(outcome)
            self._task_seconds.labels(outcome)
        for state in (SUCCESS, REVERTED, FAILURE, HELD):
            self._flow_seconds.labels(state)
        for operation in ("find_runnable", "claim", "renew", "heartbeat_replica"):
            self._backend_errors.labels(operation)

    def watch(self, running: Callable[[], int], ready: Callable[[], bool]) -> None:
        """Gauges read at scrape time from the replica itself."""
        self._running.set_function(lambda: float(running()))
        self._ready.set_function(lambda: 1.0 if ready() else 0.0)

    def exposition(self) -> tuple[bytes, str]:
        """The ``/metrics`` body in Prometheus' text format, and its type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # ------------------------------------------------------------- events

    def claimed(self, takeover: bool) -> None:
        self._claimed.inc()
        if takeover:
            self._takeovers.inc()

    def claim_lost(self) -> None:
        self._lost.inc()

    def declined(self) -> None:
        self._declines.inc()

    def task_finished(self, outcome: str, seconds: float) -> None:
        self._tasks.labels(outcome).inc()
        self._task_seconds.labels(outcome).observe(seconds)

    def flow_finished(self, state: str, seconds: float) -> None:
        self._flow_seconds.labels(state).observe(seconds)

    def backend_call(self, operation: str, seconds: float) -> None:
        if operation == "renew":
            self._renewals.observe(seconds)

    def backend_error(self, operation: str) -> None:
        self._backend_errors.labels(operation).inc()
