"""Finding work and claiming it, at a cost that does not grow with the store.

Per poll interval an idle replica makes one ``find_runnable`` call and then
waits (``wait_for_work`` wakes early on backends that watch for changes or
announce submits and releases).
It asks for more candidates than it has free slots and shuffles them, so
replicas polling at the same moment mostly try different flows instead of
all racing for the oldest one; losing a race (``ClaimHeld``) is normal.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from ..backends.base import Backend, Capability
from ..backends.errors import BackendUnavailable, ClaimHeld, FlowbatonError, FlowNotFound
from ..engine.claim import Claim
from ..observability.observer import ReplicaObserver
from .lease import LeasedGate
from .skiplist import SkipList

__all__ = ["ClaimLoop", "default_poll_interval"]

log = logging.getLogger("flowbaton.coordinator")

#: Starts running a claim just granted; False if it was not taken (no room).
Launch = Callable[[Claim[LeasedGate]], bool]

_MAX_BACKOFF = 5.0  # seconds between polls while the backend is unreachable
#: capabilities whose ``wait_for_work`` wakes on news, so idling waits on it
_WAKES_IDLE = frozenset({Capability.WATCH, Capability.NOTIFY})


def default_poll_interval(lease: float, backend: Backend) -> float:
    """Short enough that an expired lease or a released claim is picked up
    well within the takeover targets (lease + 0.5 s; 0.5 s after a graceful
    release). A watching backend wakes on every change, so it may poll
    rarely; one that only notifies (Redis) does not announce a lease running
    out, which only a poll finds, so it keeps the short interval."""
    ceiling = 1.0 if Capability.WATCH in backend.capabilities else 0.25
    return max(0.02, min(ceiling, lease / 4))


class ClaimLoop:
    """The replica's scheduler thread: poll, filter, shuffle, claim, launch."""

    def __init__(
        self,
        backend: Backend,
        replica_id: str,
        lease: float,
        *,
        skips: SkipList,
        free_slots: Callable[[], int],
        running: Callable[[], set[str]],
        launch: Launch,
        poll_interval: float,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        observer: ReplicaObserver | None = None,
    ) -> None:
        self.backend = backend
        self.observer = observer or ReplicaObserver()
        self.replica_id = replica_id
        self.lease = lease
        self.skips = skips
        self.free_slots = free_slots
        self.running = running
        self.launch = launch
        self.poll_interval = poll_interval
        self._rng = rng or random.Random()
        self._clock = clock
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------- one poll

    def poll_once(self) -> int:
        """Claim up to the free slots' worth of runnable flows; how many."""
        free = self.free_slots()
        if free <= 0:
            return 0
        candidates = self._candidates(free)
        claimed = 0
        for flow_id in candidates:
            if claimed >= free or self._stopping.is_set():
                break
            claimed += self._try_claim(flow_id)
        return claimed

    def _candidates(self, free: int) -> list[str]:
        # Over-ask so locally skipped flows and lost races do not leave slots idle.
        limit = free * 4 + min(len(self.skips), 100)
        mine = self.running()
        with self.observer.backend_call("find_runnable"):
            runnable = self.backend.find_runnable(limit)
        found = [f for f in runnable if f not in mine and not self.skips.skipped(f)]
        self._rng.shuffle(found)
        return found

    def _try_claim(self, flow_id: str) -> int:
        """Claim one flow and launch it; the claim's gate counts its lease
        from before the request was sent (``lease.LeaseKeeper.track``)."""
        sent_at = self._clock()
        try:
            with self.observer.backend_call("claim"):
                token = self.backend.claim(flow_id, self.replica_id, self.lease)
        except (ClaimHeld, FlowNotFound):
            return 0  # another replica was faster, or an operator purged it
        return 1 if self.launch(Claim(token, LeasedGate(self._clock), sent_at)) else 0

    # ------------------------------------------------------------ thread

    def wake(self) -> None:
        """Poll again now (a slot freed up, or a flow was submitted here)."""
        self._wake.set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name=f"flowbaton-claims-{self.replica_id}",
                                        daemon=True)
        self._thread.start()

    def stop(self, join: bool = True) -> None:
        """Claim nothing more; ``join`` waits for the loop's thread to end
        (a stopping replica first stops claiming, then joins once its
        flows are handed back)."""
        self._stopping.set()
        self._wake.set()
        if join and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        pause = self.poll_interval
        while not self._stopping.is_set():
            self.observer.health.tick("claims")
            try:
                self.poll_once()
                pause = self.poll_interval
            except BackendUnavailable as err:
                pause = min(max(pause * 2, self.poll_interval), _MAX_BACKOFF)
                log.warning("backend unavailable, polling again in %.1fs: %s", pause, err,
                            extra={"replica_id": self.replica_id})
            except Exception:  # a bad record or a bug must not end the replica's polling
                log.exception("claim loop round failed", extra={"replica_id": self.replica_id})
            self._idle(pause * self._rng.uniform(0.8, 1.2))

    def _idle(self, timeout: float) -> None:
        """Wait for the next poll: on the backend's ``wait_for_work`` when it
        wakes on news (watch or notify) and a slot is free, else on our own
        wake-up event."""
        if self._wake.is_set() or self._stopping.is_set():
            self._wake.clear()
            return
        if not _WAKES_IDLE.isdisjoint(self.backend.capabilities) and self.free_slots() > 0:
            try:
                self.backend.wait_for_work(timeout)
            except FlowbatonError:
                self._wake.wait(timeout)
        else:
            self._wake.wait(timeout)
        self._wake.clear()
