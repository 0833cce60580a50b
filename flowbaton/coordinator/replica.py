"""``Coordinator``: one replica of a service that runs flows.

It ties the pieces together: a ``LeaseKeeper`` (heartbeat), a ``ClaimLoop``
(finding and claiming work) and one ``FlowWorker`` thread per claimed flow,
bounded by ``concurrency``. It is also the client API: ``submit`` and
``wait`` work without ``start`` (a web service may submit and let separate
worker replicas run the flows). Its ``observer`` keeps the health facts and,
after ``enable_metrics``, the Prometheus metrics; ``serve_http`` exposes
both on a port for scrapers and orchestrators.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..backends.base import Backend
from ..backends.errors import FlowbatonError
from ..engine import FlowReport, new_flow_detail, run_flow
from ..engine.builds import AUTO_BUILD, UNSET_COST, resolve_build
from ..engine.claim import Claim
from ..engine.counting import Prepared
from ..engine.errors import FactoryError
from ..engine.poison import PoisonRule
from ..engine.timeouts import check_timeout
from ..observability.health import ReplicaHealth
from ..observability.observer import ReplicaObserver, metrics_class
from ..observability.probes import Mount, ProbeServer
from ..observability.tracing import install as install_tracing
from .batch import prepare_batch
from .claimloop import ClaimLoop, default_poll_interval
from .handover import Mailbox
from .identity import default_replica_id, flowbaton_version, replica_info
from .lease import LeasedGate, LeaseKeeper
from .opening import WrapBackend, open_with_lease
from .restart import restart_in_place
from .skiplist import SkipList
from .waiting import wait_for_flow
from .worker import FlowWorker, RunFlow, WorkerSettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from flowbaton.observability.metrics import ReplicaMetrics

__all__ = ["AUTO_BUILD", "Coordinator", "connect", "DEFAULT_BUILD_TIMEOUT", "DEFAULT_STOP_TIMEOUT"]

log = logging.getLogger("flowbaton.coordinator")

#: seconds to import a factory and build its flow: generous for a cold
#: import, far below "stalled for ever"
DEFAULT_BUILD_TIMEOUT = 60.0
#: seconds a graceful stop waits: below docker compose's default 60 s and
#: the deploy/ files' 120 s grace periods, so the replica exits before SIGKILL
DEFAULT_STOP_TIMEOUT = 50.0


def connect(
    url: str | Backend | None = None,
    replica_id: str | None = None,
    allow: Sequence[str] | None = None,
    lease: float = 10.0,
    max_takeovers: int | None = 3,
    *,
    wrap_backend: WrapBackend | None = None,
    **options: Any,
) -> Coordinator:
    """Open the backend ``url`` names (default ``FLOWBATON_BACKEND``, else
    ``sqlite:///./flowbaton.db``) and return a replica, not yet started.
    ``options`` are ``Coordinator``'s (``task_timeout``, ``build_timeout``,
    ``stop_timeout`` ...).
    ``allow`` lists the module prefixes whose factories this replica may
    import, or exact ``"pkg.mod:function"`` names for a closed list
    (``engine.factory`` has the whole rule); ``start`` needs one.
    ``wrap_backend`` is applied to the backend opened from ``url`` (not to
    a ``Backend`` passed in, which the caller may wrap itself) and the
    replica uses what it returns: fault-injection runs record every call
    this way (``flowbaton.testing.recorder.wrap_from_env``)."""
    owned = not isinstance(url, Backend)
    backend = url if isinstance(url, Backend) else open_with_lease(url, lease, wrap_backend)
    return Coordinator(backend, replica_id=replica_id, allow=allow, lease=lease,
                       max_takeovers=max_takeovers, owns_backend=owned, **options)


class Coordinator:
    """A replica: submits flows, and once started, claims and runs them."""

    def __init__(
        self,
        backend: Backend,
        *,
        replica_id: str | None = None,
        allow: Sequence[str] | None = None,
        lease: float = 10.0,
        max_takeovers: int | None = 3,
        max_workers: int = 8,
        poll_interval: float | None = None,
        owns_backend: bool = False,
        run_flow: RunFlow = run_flow,
        clock: Callable[[], float] = time.monotonic,
        task_timeout: float | None = None,
        build_timeout: float | None = DEFAULT_BUILD_TIMEOUT,
        stop_timeout: float | None = DEFAULT_STOP_TIMEOUT,
        build: str | None = AUTO_BUILD,
    ) -> None:
        """``max_takeovers``: claims in a row that may end in a dead replica,
        with no task finishing, before a flow is held (the poison rule; None:
        never held). ``task_timeout``: seconds a task call may take when
        the task sets no ``timeout`` of its own (None: unbounded);
        ``build_timeout``: the same for importing a factory and building its
        flow; ``stop_timeout``: how long ``stop()`` waits for running flows
        to hand back (None or ``math.inf``: until they do). What a timeout
        does to a thread Python cannot stop: ``engine.runner.FlowRun`` and
        ``stop``. ``build``: the release of the code this replica runs, a
        PEP 440 version (``"auto"``: the version of the distribution that
        provides the allowed factories, if one does; None: unset). A flow
        that newer code already ran is declined, never resumed on older
        code; flows submitted here carry it (``engine.builds``)."""
        if lease <= 0:
            raise ValueError(f"lease must be positive, got {lease!r}")
        for name, value in (("task_timeout", task_timeout), ("build_timeout", build_timeout),
                            ("stop_timeout", stop_timeout)):
            check_timeout(value, f"replica option {name}")
        self.stop_timeout = math.inf if stop_timeout is None else float(stop_timeout)
        self.backend = backend
        install_tracing()  # OpenTelemetry spans when its API is installed (observability.tracing)
        self.replica_id = replica_id or default_replica_id()
        self.allow = list(allow) if allow is not None else None
        self.lease = lease
        self.build = resolve_build(build, self.allow)
        self.settings = WorkerSettings(self.replica_id, self.allow, max_workers, _poison_rule(max_takeovers),
                                       task_timeout=task_timeout, build_timeout=build_timeout,
                                       build=self.build)
        self.poll_interval = poll_interval or default_poll_interval(lease, backend)
        self._owns_backend = owns_backend
        self._run_flow = run_flow
        self._clock = clock
        self.skips = SkipList(clock)
        # A loop round may wait on the backend's retries; only far longer is "stuck".
        # Not ready once no backend call succeeded for two beats: within the lease of an outage (health.py).
        health = ReplicaHealth(stall_after=max(60.0, 3 * lease), quiet_after=lease * 2 / 3, clock=clock)
        self.observer = ReplicaObserver(health, clock)
        self.http: ProbeServer | None = None
        presence = replica_info(self.replica_id, self.allow, self.build)
        self.keeper = LeaseKeeper(backend, self.replica_id, lease, clock=clock, presence=presence,
                                  observer=self.observer)
        self.mailbox = Mailbox(backend, self.replica_id, presence.started_at, lease, clock)
        self.keeper.after_beat = self.mailbox.check
        self.mailbox.on_drain = lambda drain: self.keeper.announce_draining(drain.at if drain else None)
        self._lock = threading.Lock()
        self._workers: dict[str, tuple[FlowWorker, threading.Thread]] = {}
        self._concurrency = 0
        self._started = False
        self._stopping = False
        self._idle = threading.Condition(self._lock)
        self._abandoned: list[str] = []  # flows still running when the last stop gave up on them
        self.loop = self._make_loop()

    def _make_loop(self) -> ClaimLoop:
        return ClaimLoop(
            self.backend, self.replica_id, self.lease, skips=self.skips,
            free_slots=self.free_slots, running=self.running, launch=self._launch,
            poll_interval=self.poll_interval, clock=self._clock, observer=self.observer,
            prepare=lambda tokens: prepare_batch(self.backend, tokens, self.settings),
        )

    # ---------------------------------------------------------- client API

    def submit(
        self,
        factory: str | Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        name: str | None = None,
        flow_id: str | None = None,
        allow: Sequence[str] | None = None,
        by_name: bool = False,
    ) -> str:
        """Validate and store a new flow; any replica may run it (not only
        this one: a front end may submit what workers run). Returns its id.
        Submitting imports the factory and calls it once to validate the
        flow, so a name received from outside (a request, a queue) must come
        with ``allow``: it is checked before anything is imported.
        ``by_name``: the factory's code is not here; store its name and the
        JSON values unchecked beyond their form, and let the replicas that
        build it validate the rest (``engine.lifecycle.new_flow_detail``)."""
        detail = new_flow_detail(factory, args, kwargs, inputs, name=name, flow_id=flow_id, allow=allow,
                                 build=self.build, by_name=by_name)
        self.backend.create_flow(detail)
        log.info("submitted flow %s (%s) [replica %s]", detail.id, detail.factory, self.replica_id,
                 extra={"flow_id": detail.id, "replica_id": self.replica_id})
        if self._started:
            self.loop.wake()
        return detail.id

    def wait(self, flow_id: str, timeout: float | None = 60.0) -> FlowReport:
        """The flow's report once it is done or HELD (which needs an operator,
        so waiting longer would not help). ``TimeoutError`` otherwise."""
        return wait_for_flow(self.backend, flow_id, timeout)

    # ------------------------------------------------------------ replica

    def start(self, concurrency: int = 4) -> Coordinator:
        """Run flows on background threads, up to ``concurrency`` at once."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
        if self.allow is None:
            # Factory names come from shared storage: untrusted input. A
            # replica imports only what its operator allowed.
            raise FactoryError("a replica needs allow=[...]: the module prefixes whose factories it may "
                               "import, e.g. connect(url, allow=['myservice.'])")
        with self._lock:
            if self._started:
                raise FlowbatonError(f"replica {self.replica_id} is already started")
            self._concurrency, self._started, self._stopping = concurrency, True, False
        try:
            restart_in_place(self.backend, self.replica_id)  # first: registering replaces the record it reads
            self.keeper.register()
        except BaseException:
            with self._lock:
                self._started = False
            raise
        self.observer.health.started()
        self.keeper.start()
        self.loop.start()
        if self.build is None:
            log.warning("replica %s: %s", self.replica_id, UNSET_COST, extra={"replica_id": self.replica_id})
        log.info("replica %s started (lease %.1fs, concurrency %d, allow %s, build %s)", self.replica_id,
                 self.lease, concurrency, self.allow, self.build or "unset",
                 extra={"replica_id": self.replica_id, "build": self.build})
        return self

    def serve(self, concurrency: int = 4) -> bool:
        """Run until SIGTERM or SIGINT, then stop gracefully within the
        ``stop_timeout``; False when flows were given up on (see ``stop``:
        exit the process then). A second signal gets the default behaviour
        (the operator insists)."""
        stop = threading.Event()
        received: list[int] = []
        restore = self._handle_stop_signals(stop, received)
        clean = False
        try:
            self.start(concurrency)
            while not stop.wait(0.5):
                pass
            log.info("replica %s got signal %d: stopping gracefully", self.replica_id, received[0],
                     extra={"replica_id": self.replica_id})
        finally:
            clean = self.stop()
            for signum, handler in restore.items():
                signal.signal(signum, handler)
        return clean

    def _handle_stop_signals(self, stop: threading.Event, received: list[int]) -> dict[int, Any]:
        """Install SIGTERM/SIGINT handlers that note the signal in
        ``received`` and set ``stop``; returns the old ones. Only the main
        thread may: elsewhere the host application owns signals and calls
        ``stop()`` itself. The handler does not log: it may interrupt the
        main thread in the middle of writing a log line, and a second write
        to the same stream from the handler fails ("reentrant call"), which
        once left a replica unable to stop; ``serve`` logs the signal."""
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            received.append(signum)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            stop.set()

        return {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}

    def stop(self, timeout: float | None = None) -> bool:
        """Graceful: start no new task, let running tasks finish, release
        every claim the moment its runner returns, leave the replica list.

        Bounded by ``timeout`` (default: the replica's ``stop_timeout``).
        Past it, stop gives up on the flows still running (a task hung, or
        slower than the bound): their claims are neither released nor
        renewed, so they expire after the lease and the next owner resumes
        each flow with its running task in doubt. Their async task calls
        are cancelled (and once unwound, the claim is released); their
        threads cannot be stopped: exit the process now (``serve`` and the
        standalone replica do); a process that lives on may run such a
        task beside its next owner. ``close()`` then leaves the backend
        open, so a ZooKeeper session (and its claims) ends with the process,
        not before.
        False when flows were given up on."""
        with self._lock:
            if not self._started:
                return True
            self._stopping = True
            workers = list(self._workers.values())
        deadline = self._clock() + (self.stop_timeout if timeout is None else timeout)
        self.observer.health.stopping()
        self.loop.stop(join=False)
        for worker, _ in workers:
            worker.gate.stop("replica stopping")
        for _, thread in workers:
            thread.join(_left(deadline, self._clock()))
        abandoned = [worker for worker, thread in workers if thread.is_alive()]
        for worker in abandoned:  # its async task calls are cancelled; threads cannot be
            worker.gate.lose("replica stopped past its stop timeout")
        self._abandoned = [worker.flow_id for worker in abandoned]
        if self._abandoned:
            log.error("replica %s: stop timeout reached with flows still running: %s; not released, their "
                      "claims expire after the lease and the next owner resumes them with the running task in "
                      "doubt", self.replica_id, ", ".join(self._abandoned),
                      extra={"replica_id": self.replica_id, "event": "stop_timeout", "flows": self._abandoned})
        # Heartbeat and claim loop end after one backend call at most; a
        # backend that hangs is the drivers' own timeouts' to bound.
        self.keeper.stop()
        self._leave()
        self.loop.stop()
        with self._lock:
            self._started = False
        self.observer.health.stopped()
        log.info("replica %s stopped", self.replica_id, extra={"replica_id": self.replica_id})
        return not self._abandoned

    def _leave(self) -> None:
        try:
            self.backend.unregister_replica(self.replica_id)
        except FlowbatonError as err:
            log.warning("could not unregister replica %s: %s", self.replica_id, err,
                        extra={"replica_id": self.replica_id})

    def close(self) -> None:
        """Stop (gracefully) if started, close the HTTP port, and close the
        backend if we opened it."""
        self.stop()
        if self.http is not None:
            self.http.close()
            self.http = None
        if self._owns_backend and not self._abandoned:
            self.backend.close()

    # ------------------------------------------------------- observability

    def enable_metrics(self, registry: CollectorRegistry | None = None,
                       stranded: Callable[[], int] | None = None) -> ReplicaMetrics:
        """Count claims, takeovers, task outcomes ... from now on, in
        ``registry`` (default: a new one of this replica's own, since a
        process may hold several replicas). Needs ``flowbaton[metrics]``.
        The backlog gauge reads the backend's index; ``stranded`` counts
        stranded flows for its gauge (``flowbaton.ops.stranded.count_stranded``:
        the CLI's replica passes it; without, that gauge reads NaN)."""
        if self.observer.metrics is None:
            metrics = metrics_class()(self.replica_id, flowbaton_version(), registry, self.build)
            metrics.watch(lambda: len(self.running()), lambda: self.observer.health.readiness().ok)
            metrics.watch_fleet(self.backend.count_backlog, stranded)
            self.observer.metrics = metrics
        return self.observer.metrics

    def serve_http(self, port: int, host: str = "", *, metrics: bool = True,
                   mounts: Mapping[str, Mount] | None = None) -> ProbeServer:
        """Serve ``/healthz``, ``/readyz`` and (``metrics``) ``/metrics`` on
        ``port`` (0: any free one, see ``.port``) until ``close()``; and
        ``mounts``, apps under path prefixes (``ProbeServer``)."""
        if self.http is None:
            exposition = self.enable_metrics().exposition if metrics else None
            self.http = ProbeServer(self.observer.health, exposition, port=port, host=host,
                                    replica_id=self.replica_id, mounts=mounts).start()
        return self.http

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------- slots

    def running(self) -> set[str]:
        """Ids of the flows this replica is running now."""
        with self._lock:
            return set(self._workers)

    def free_slots(self) -> int:
        """How many more flows this replica would claim now: ``concurrency``
        less the flows it runs; 0 before ``start``, from ``stop`` on, and while
        an operator's drain is asked of it. The claim loop asks it before
        each poll, so a full replica leaves work to the others."""
        with self._lock:
            if self._stopping or self.mailbox.draining is not None:
                return 0
            return self._concurrency - len(self._workers)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no flow runs here (tests, and services draining)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._workers, timeout)

    def _launch(self, claim: Claim[LeasedGate], prepared: Prepared | None = None) -> bool:
        """Start a worker thread for a fresh claim (``prepared``: its flow,
        read and maybe counted in its batch); False (and the claim
        released) if the replica is stopping or already full."""
        worker = FlowWorker(self.backend, self.keeper, self.skips, self.settings, self._run_flow, claim,
                            self.observer, prepared, self.mailbox)
        with self._lock:
            accepted = not self._stopping and len(self._workers) < self._concurrency
            if accepted:
                thread = threading.Thread(target=self._work, args=(worker,), daemon=True,
                                          name=f"flowbaton-flow-{claim.flow_id[:12]}")
                self._workers[claim.flow_id] = (worker, thread)
                self.keeper.track(claim)
                thread.start()
        if not accepted:
            worker.release()
        return accepted

    def _work(self, worker: FlowWorker) -> None:
        try:
            worker()
        finally:
            with self._idle:
                self._workers.pop(worker.flow_id, None)
                self._idle.notify_all()
            self.loop.wake()


def _poison_rule(max_takeovers: int | None) -> PoisonRule | None:
    """The replica's poison rule: a flow taken over more than
    ``max_takeovers`` times in a row without progress is held (None: never)."""
    return None if max_takeovers is None else PoisonRule(max_takeovers)


def _left(deadline: float, now: float) -> float | None:
    """Seconds to ``deadline`` for ``Thread.join`` (None: no deadline).
    A wait longer than ``threading.TIMEOUT_MAX`` (about 292 years) raises
    OverflowError in ``join``: that long means no deadline."""
    left = deadline - now
    return None if left >= threading.TIMEOUT_MAX else max(0.0, left)
