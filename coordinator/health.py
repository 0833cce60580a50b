"""Is this replica alive, and is it ready? The answers orchestrators probe.

*Alive* (``/healthz``): the replica's threads still go round. A failing
liveness probe makes an orchestrator restart the process, which only helps
when the process itself is stuck; so an unreachable backend never makes a
replica "dead" (restarting every replica during a backend outage would only
add load when the backend comes back).

*Ready* (``/readyz``): the replica can do its job right now: it has started,
is not stopping, its last call to the backend got through, and (ZooKeeper)
its session is neither suspended nor lost. The backend's verdict is the
outcome of the most recent call the replica made, whichever it was: a
success anywhere means the backend answers again. Drivers retry transient
errors for their ``retry_deadline`` before a call fails, so "not ready"
follows an outage by up to that long, except a ZooKeeper session, whose
SUSPENDED event arrives as soon as the connection drops.
"""

from __future__ import annotations

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

    def __init__(self, *, stall_after: float = 120.0, clock: Clock = time.monotonic) -> None:
        self.stall_after = stall_after
        self._clock = clock
        self._lock = threading.Lock()
        self._state = _NEW
        self._ticks: dict[str, float] = {}
        self._backend_error: str | None = None
        self._session: str = CONNECTED

    # ------------------------------------------------------------ facts

    def started(self) -> None:
        with self._lock:
            self._state, self._ticks = _RUNNING, {}

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

    def backend_ok(self) -> None:
        with self._lock:
            self._backend_error = None

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
            state, ticks = self._state, dict(self._ticks)
        checks: dict[str, object] = {"state": state, **{f"{k}_round_age": self._age(v) for k, v in ticks.items()}}
        if state == _STOPPED:
            return Verdict(False, "replica stopped", checks)
        stalled = sorted(k for k, v in ticks.items() if self._age(v) > self.stall_after)
        if state == _RUNNING and stalled:
            return Verdict(False, f"no round of the {', '.join(stalled)} loop for over {self.stall_after:g}s", checks)
        return Verdict(True, "alive" if state != _NEW else "starting", checks)

    def readiness(self) -> Verdict:
        with self._lock:
            state, error, session = self._state, self._backend_error, self._session
        checks: dict[str, object] = {"state": state, "session": session, "backend_error": error}
        if state != _RUNNING:
            return Verdict(False, f"replica {state}", checks)
        if session in (SUSPENDED, LOST):
            return Verdict(False, f"backend session {session}", checks)
        if error is not None:
            return Verdict(False, f"backend unavailable: {error}", checks)
        return Verdict(True, "ready", checks)

    def _age(self, at: float) -> float:
        return round(self._clock() - at, 3)
