"""Is this replica alive, and is it ready? The answers orchestrators probe.

*Alive* (``/healthz``): the replica's threads still go round. A failing
liveness probe makes an orchestrator restart the process, which only helps
when the process itself is stuck; so an unreachable backend never makes a
replica "dead" (restarting every replica during a backend outage would only
add load when the backend comes back).

A call abandoned at its timeout (a task's ``timeout``, the replica's
``build_timeout``) also makes the replica dead, naming the flow and task:
Python cannot stop the thread, the replica keeps the flow's claim so that
nobody runs the task a second time meanwhile, and only a restart ends it.
It comes alive again if the call returns after all.

*Ready* (``/readyz``): the replica can do its job right now: it has started,
is not stopping, its last call to the backend got through, and (ZooKeeper)
its session is neither suspended nor lost. The backend's verdict is the
outcome of the most recent call the replica made, whichever it was: a
success anywhere means the backend answers again. Drivers retry transient
errors for their ``retry_deadline`` before a call fails, so a failed call
alone would say "not ready" up to that long after an outage began (10 s on
Redis). So readiness also needs a *recent* success: a replica calls its
backend every lease/3 (renewals, presence, mailbox), and with ``quiet_after``
(the replica's: two thirds of its lease) no success for that long is "not
ready" too. Readiness thus turns within the lease of an outage's start (a
ZooKeeper session's SUSPENDED event, as soon as the connection drops).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..backends.base import CONNECTED, LOST, SUSPENDED

__all__ = ["ReplicaHealth", "Verdict"]

Clock = Callable[[], float]

_NEW, _RUNNING, _STOPPING, _STOPPED = "starting", "running", "stopping", "stopped"


@dataclass(frozen=True)
class Verdict:
    """One probe's answer: ``ok``, why, and the facts it looked at."""

    ok: bool
    reason: str
    checks: dict[str, object] = field(default_factory=dict)


class ReplicaHealth:
    """Thread-safe record of the facts the probes judge by."""

    def __init__(self, *, stall_after: float = 120.0, quiet_after: float | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.stall_after = stall_after
        self.quiet_after = quiet_after
        self._clock = clock
        self._last_ok = -math.inf
        self._lock = threading.Lock()
        self._state = _NEW
        self._ticks: dict[str, float] = {}
        self._backend_error: str | None = None
        self._session: str = CONNECTED
        self._stuck: dict[tuple[str, str | None], tuple[float, float]] = {}  # (flow, task) -> (since, timeout)

    # ------------------------------------------------------------ facts

    def started(self) -> None:
        with self._lock:
            self._state, self._ticks, self._last_ok = _RUNNING, {}, self._clock()

    def stopping(self) -> None:
        with self._lock:
            if self._state == _RUNNING:
                self._state = _STOPPING

    def stopped(self) -> None:
        with self._lock:
            self._state = _STOPPED

    def tick(self, loop: str) -> None:
        """``loop`` (a thread that goes round) made one more round."""
        now = self._clock()
        with self._lock:
            self._ticks[loop] = now

    def stuck(self, flow_id: str, task_id: str | None, timeout: float) -> None:
        """A call of ``flow_id`` ran past ``timeout`` and is abandoned: the
        execute or revert of ``task_id``, or (None) the factory's build."""
        now = self._clock()
        with self._lock:
            self._stuck[(flow_id, task_id)] = (now, timeout)

    def unstuck(self, flow_id: str, task_id: str | None) -> None:
        with self._lock:
            self._stuck.pop((flow_id, task_id), None)

    def backend_ok(self) -> None:
        with self._lock:
            self._backend_error = None
            self._last_ok = self._clock()

    def backend_failed(self, operation: str, error: BaseException) -> None:
        with self._lock:
            self._backend_error = f"{operation}: {error}"

    def session(self, state: str) -> None:
        """A session event from the backend (SUSPENDED, LOST, CONNECTED)."""
        if state in (SUSPENDED, LOST, CONNECTED):
            with self._lock:
                self._session = state

    # ---------------------------------------------------------- verdicts

    def liveness(self) -> Verdict:
        with self._lock:
            state, ticks, stuck = self._state, dict(self._ticks), sorted(self._stuck.items(), key=str)
        checks: dict[str, object] = {"state": state, **{f"{k}_round_age": self._age(v) for k, v in ticks.items()}}
        if stuck:
            checks["stuck"] = [{"flow_id": f, "task_id": t, "timeout": limit, "stuck_for": self._age(since)}
                               for (f, t), (since, limit) in stuck]
        if state == _STOPPED:
            return Verdict(False, "replica stopped", checks)
        if stuck:
            return Verdict(False, _stuck_reason(stuck), checks)
        stalled = sorted(k for k, v in ticks.items() if self._age(v) > self.stall_after)
        if state == _RUNNING and stalled:
            return Verdict(False, f"no round of the {', '.join(stalled)} loop for over {self.stall_after:g}s", checks)
        return Verdict(True, "alive" if state != _NEW else "starting", checks)

    def readiness(self) -> Verdict:
        with self._lock:
            state, error, session, last_ok = self._state, self._backend_error, self._session, self._last_ok
        checks: dict[str, object] = {"state": state, "session": session, "backend_error": error}
        if state != _RUNNING:
            return Verdict(False, f"replica {state}", checks)
        if session in (SUSPENDED, LOST):
            return Verdict(False, f"backend session {session}", checks)
        if error is not None:
            return Verdict(False, f"backend unavailable: {error}", checks)
        quiet = self._age(last_ok)
        if self.quiet_after is not None and quiet > self.quiet_after:
            checks["backend_quiet"] = quiet
            return Verdict(False, f"no backend call succeeded for {quiet:.1f}s (over {self.quiet_after:g}s)", checks)
        return Verdict(True, "ready", checks)

    def _age(self, at: float) -> float:
        return round(self._clock() - at, 3)


def _stuck_reason(stuck: list[tuple[tuple[str, str | None], tuple[float, float]]]) -> str:
    (flow_id, task_id), (_, limit) = stuck[0]
    what = f"task {task_id!r} of flow {flow_id}" if task_id is not None else f"the factory build of flow {flow_id}"
    more = f" (and {len(stuck) - 1} more)" if len(stuck) > 1 else ""
    return (f"{what} ran past its timeout of {limit:g}s and its thread is stuck{more}; "
            "restart the process (its claims then expire and the flows resume elsewhere)")
