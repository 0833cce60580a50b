"""Finding work and claiming it, at a cost that does not grow with the store.

Per poll interval an idle replica makes one ``find_runnable`` call and then
waits (``wait_for_work`` wakes early on backends that watch for changes or
announce submits and releases).
It asks for more candidates than it has free slots and shuffles them; the
sharing rule (``sharing.py``) picks those it may claim now (its own share
first, others' once they waited), and it claims them in one
``claim_many`` call: a survivor takes a dead replica's orphans over in a
few round trips, not one per flow. Losing a race is normal (the flow is
just not granted).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping

from ..backends.base import Backend, Capability
from ..backends.errors import BackendUnavailable, FlowbatonError
from ..backends.records import ClaimToken
from ..engine.claim import Claim
from ..engine.counting import Prepared
from ..observability.observer import ReplicaObserver
from .lease import LeasedGate
from .sharing import Sharing, default_handoff
from .skiplist import SkipList

__all__ = ["ClaimLoop", "default_poll_interval"]

log = logging.getLogger("flowbaton.coordinator")

#: Starts running a claim just granted, with its flow as read (and maybe
#: counted) in its batch; False if it was not taken (no room).
Launch = Callable[[Claim[LeasedGate], Prepared | None], bool]
#: Reads (and counts) the flows of claims just granted, in a few round trips.
Prepare = Callable[[list[ClaimToken]], Mapping[str, Prepared]]

_MAX_BACKOFF = 5.0  # seconds between polls while the backend is unreachable
#: longest single ``wait_for_work``: a stop (or a wake-up) waits this long at
#: most for an idle loop. Every backend's wait is local (an event, a
#: subscription already open, a file's change counter): slicing it costs
#: the store nothing.
_IDLE_SLICE = 0.5
#: capabilities whose ``wait_for_work`` wakes on news, so idling waits on it
_WAKES_IDLE = frozenset({Capability.WATCH, Capability.NOTIFY})


def default_poll_interval(lease: float, backend: Backend) -> float:
    """Short enough that an expired lease or a released claim is picked up
    well within the takeover targets (lease + 0.5 s; 0.5 s after a graceful
    release). A watching backend wakes on every change, a lease running out
    included, so it polls only as a safety net: every half lease, at most
    5 s (an idle replica's cost is then a poll every few seconds). One that
    only notifies does not announce a lease running out, which only a poll
    finds, so it keeps the short interval."""
    if Capability.WATCH in backend.capabilities:
        return max(0.02, min(5.0, lease / 2))
    return max(0.02, min(0.25, lease / 4))


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
        prepare: Prepare | None = None,
        handoff: float | None = None,
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
        self.prepare = prepare
        self.poll_interval = poll_interval
        self._rng = rng or random.Random()
        self._clock = clock
        self.sharing = Sharing(backend, replica_id, handoff=default_handoff(lease) if handoff is None else handoff,
                               refresh=min(0.25, lease / 8), clock=clock)
        self._handoff_in: float | None = None  # seconds until a flow waiting for its home may be taken
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------- one poll

    def poll_once(self) -> int:
        """Claim up to the free slots' worth of the runnable flows this
        replica may take now (``sharing``); how many it launched."""
        self._handoff_in = None
        free = self.free_slots()
        if free <= 0:
            return 0
        ready, self._handoff_in = self.sharing.claimable(self._candidates(free))
        if not ready[:free] or self._stopping.is_set():
            return 0
        return self._claim(ready[:free])

    def _candidates(self, free: int) -> list[str]:
        # Over-ask so locally skipped flows and lost races do not leave slots idle.
        limit = free * 4 + min(len(self.skips), 100)
        mine = self.running()
        with self.observer.backend_call("find_runnable"):
            runnable = self.backend.find_runnable(limit)
        found = [f for f in runnable if f not in mine and not self.skips.skipped(f)]
        self._rng.shuffle(found)
        return found

    def _claim(self, flow_ids: list[str]) -> int:
        """Claim the flows in one call and launch each granted one (those
        held by a faster replica, or purged, are just not granted); each
        claim's gate counts its lease from before the request was sent
        (``lease.LeaseKeeper.track``). The granted flows are read and
        counted in one batch for their workers (``batch.py``)."""
        sent_at = self._clock()
        with self.observer.backend_call("claim"):
            tokens = self.backend.claim_many(flow_ids, self.replica_id, self.lease)
        prepared = self._prepare(tokens)
        # A launch refused (no room, or stopping) releases its claim.
        return sum(1 for token in tokens
                   if self.launch(Claim(token, LeasedGate(self._clock), sent_at), prepared.get(token.flow_id)))

    def _prepare(self, tokens: list[ClaimToken]) -> Mapping[str, Prepared]:
        """``prepare`` of claims just granted; nothing when it fails, so each
        worker reads its own flow and meets the error there (the claims are
        held: they must be launched or released)."""
        if self.prepare is None or len(tokens) < 2:
            return {}  # one flow: its worker's own reads and write cost the same
        try:
            with self.observer.backend_call("prepare"):
                return self.prepare(tokens)
        except FlowbatonError as err:
            log.warning("could not read %d claimed flows in one batch, each is read on its own: %s",
                        len(tokens), err, extra={"replica_id": self.replica_id})
            return {}

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
                pause = self.poll_interval if self._handoff_in is None else min(self.poll_interval,
                                                                                self._handoff_in)
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
                self._wait_for_work(timeout)
            except FlowbatonError:
                self._wake.wait(timeout)
        else:
            self._wake.wait(timeout)
        self._wake.clear()

    def _wait_for_work(self, timeout: float) -> None:
        """The backend's wait, in slices of ``_IDLE_SLICE``, ending early on
        news, a stop or a wake-up (the backend's wait sees neither)."""
        deadline = time.monotonic() + timeout
        while not (self._stopping.is_set() or self._wake.is_set()):
            left = deadline - time.monotonic()
            if left <= 0 or self.backend.wait_for_work(min(left, _IDLE_SLICE)):
                return
