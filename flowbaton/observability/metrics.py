"""Prometheus metrics of one replica (``pip install 'flowbaton[metrics]'``).

Each replica object gets its own ``CollectorRegistry`` unless it is handed
one: a process may hold several replicas (tests, or a service that runs a
replica per tenant) and Prometheus' global registry refuses a second set of
the same names. Import this module only through ``load_metrics``, which
turns a missing ``prometheus_client`` into an error saying what to install.

Label values are bounded on purpose: outcomes, end states and backend
operation names, never flow or task ids (one series per flow would grow
without limit). The ``factory`` label of ``flowbaton_factory_*`` takes the
factories this replica ran (its code: an allow-list admitted and imported
them), at most ``MAX_FACTORIES`` of them, then "other".

The fleet gauges (backlog, stranded) are read from the backend at scrape
time, at most once per ``FLEET_TTL`` seconds (Prometheus may scrape every
replica often; the store should not pay for each scrape), and read NaN
while the backend does not answer.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..backends.states import FAILURE, HELD, REVERTED, SUCCESS
from ..engine.events import TASK_OUTCOMES

__all__ = ["ReplicaMetrics", "METRIC_NAMES", "MAX_FACTORIES", "FLEET_TTL", "Cached"]

MAX_FACTORIES = 100
OTHER_FACTORY = "other"
FLEET_TTL = 10.0

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
    "flowbaton_factory_tasks",
    "flowbaton_factory_flows",
    "flowbaton_backlog_flows",
    "flowbaton_stranded_flows",
)


class Cached:
    """``read()`` at most once per ``ttl`` seconds; NaN while it fails (a
    scrape must never fail because the backend does not answer)."""

    def __init__(self, read: Callable[[], float], ttl: float = FLEET_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read, self._ttl, self._clock = read, ttl, clock
        self._lock = threading.Lock()
        self._at = -math.inf
        self._value = math.nan

    def __call__(self) -> float:
        with self._lock:
            if self._clock() - self._at >= self._ttl:
                try:
                    self._value = float(self._read())
                except Exception:  # any failure reads as "unknown", never as a broken scrape
                    self._value = math.nan
                self._at = self._clock()
            return self._value


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
        self._factory_tasks = Counter("flowbaton_factory_tasks", "Task executions and reverts by factory and "
                                      "outcome", ["factory", "outcome"], registry=reg)
        self._factory_flows = Counter("flowbaton_factory_flows", "Flows this replica ended, by factory and end "
                                      "state", ["factory", "state"], registry=reg)
        self._factories: set[str] = set()
        self._backlog = Gauge("flowbaton_backlog_flows", "Runnable flows nobody holds now, fleet-wide (from the "
                              "backend's index, read at most every 10 s)", registry=reg)
        self._stranded = Gauge("flowbaton_stranded_flows", "Backlog flows no live replica will run (declined by "
                               "all, or no replica's build may), among the oldest 500; fleet-wide", registry=reg)
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

    def watch_fleet(self, backlog: Callable[[], float], stranded: Callable[[], float] | None = None) -> None:
        """The fleet gauges, read through ``Cached`` at scrape time;
        ``stranded`` None leaves that gauge NaN (its rule lives in the ops API)."""
        self._backlog.set_function(Cached(backlog))
        self._stranded.set_function(Cached(stranded) if stranded is not None else lambda: math.nan)

    def _factory(self, factory: str) -> str:
        if factory in self._factories:
            return factory
        if len(self._factories) >= MAX_FACTORIES:
            return OTHER_FACTORY
        self._factories.add(factory)
        return factory

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

    def task_finished(self, outcome: str, seconds: float, factory: str | None = None) -> None:
        self._tasks.labels(outcome).inc()
        self._task_seconds.labels(outcome).observe(seconds)
        if factory is not None:
            self._factory_tasks.labels(self._factory(factory), outcome).inc()

    def flow_finished(self, state: str, seconds: float, factory: str | None = None) -> None:
        self._flow_seconds.labels(state).observe(seconds)
        if factory is not None:
            self._factory_flows.labels(self._factory(factory), state).inc()

    def backend_call(self, operation: str, seconds: float) -> None:
        if operation == "renew":
            self._renewals.observe(seconds)

    def backend_error(self, operation: str) -> None:
        self._backend_errors.labels(operation).inc()
