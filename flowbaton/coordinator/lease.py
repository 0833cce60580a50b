"""Keeping claims alive, and stopping work the moment one may be gone.

A claim lives ``lease`` seconds after its last renewal. The only clock we can
trust across machines is our own monotonic one, measured from when a renewal
was *sent*: if the reply arrives after ``sent_at + lease - margin``, the
backend may already have let the lease run out and handed the flow to
someone else, so we must behave as if it had (self-fencing). The backend's
token check stops a stale owner's *writes*; this module stops its *task
starts*, which the backend cannot see.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from ..backends.base import CONNECTED, LOST, SUSPENDED, Backend, Capability
from ..backends.errors import BackendUnavailable, FlowbatonError
from ..backends.records import ClaimToken, ReplicaInfo
from ..engine.claim import Claim
from ..engine.gate import Gate
from ..observability.observer import ReplicaObserver

__all__ = ["LeasedGate", "LeaseKeeper", "default_margin"]

log = logging.getLogger("flowbaton.coordinator")

Clock = Callable[[], float]


def default_margin(lease: float) -> float:
    """Safety margin before the lease end: at least 0.2 s, a tenth of long
    leases, never more than half the lease (short test leases still renew)."""
    return min(max(0.2, lease / 10), lease / 2)


class LeasedGate(Gate):
    """A gate that also closes by itself once the lease deadline passes.

    The heartbeat thread normally notices a late renewal first, but a process
    resumed after SIGSTOP (or a starved heartbeat thread) may let a runner
    thread ask ``may_start`` before the heartbeat gets to run: the deadline
    check here answers "no" in that window.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self.deadline = math.inf

    def may_start(self) -> bool:
        if not self.lost and self._clock() > self.deadline:
            self.lose("lease deadline passed without a timely renewal (self-fenced)")
        return super().may_start()

    def expires_in(self) -> float | None:
        return max(0.0, self.deadline - self._clock())


class LeaseKeeper:
    """One heartbeat thread per replica: renews every claim it tracks (in
    one backend call) and the replica's presence every ``lease / 3``,
    whatever the tasks are doing."""

    def __init__(
        self,
        backend: Backend,
        replica_id: str,
        lease: float,
        *,
        presence: ReplicaInfo | None = None,
        clock: Clock = time.monotonic,
        margin: float | None = None,
        observer: ReplicaObserver | None = None,
    ) -> None:
        self.backend = backend
        self.observer = observer or ReplicaObserver()
        self.replica_id = replica_id
        self.lease = lease
        self.interval = lease / 3
        self.margin = default_margin(lease) if margin is None else margin
        # The presence lapses a margin before the claims of a replica that
        # died: survivors that share its orphans (``sharing``) no longer
        # count it as a home for them when they see the orphans.
        self.presence_ttl = lease - self.margin
        self._presence = presence
        self._presence_until = -math.inf  # monotonic: our presence may have expired after this
        self._clock = clock
        self._held: dict[str, Claim[LeasedGate]] = {}  # each gate's deadline: start nothing after it
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._suspended = False
        self._thread: threading.Thread | None = None
        # Called after each beat with the claims tracked then (``handover.Mailbox.check``).
        self.after_beat: Callable[[Sequence[Claim[LeasedGate]]], None] | None = None
        if Capability.SESSION in backend.capabilities:
            backend.add_state_listener(self._on_session)

    # ------------------------------------------------------------ tracking

    def track(self, claim: Claim[LeasedGate]) -> None:
        """Keep ``claim`` renewed; its lease began at ``claim.sent_at`` at the
        latest (when the request left), so its gate's deadline counts from there."""
        self._set_deadline(claim, claim.sent_at)
        with self._lock:
            self._held[claim.flow_id] = claim

    def untrack(self, flow_id: str) -> None:
        with self._lock:
            self._held.pop(flow_id, None)

    def held(self) -> list[ClaimToken]:
        with self._lock:
            return [h.token for h in self._held.values()]

    def _tracked(self, held: Claim[LeasedGate]) -> bool:
        with self._lock:
            return self._held.get(held.flow_id) is held

    def _snapshot(self) -> list[Claim[LeasedGate]]:
        with self._lock:
            return list(self._held.values())

    def _set_deadline(self, held: Claim[LeasedGate], sent_at: float) -> None:
        held.gate.deadline = sent_at + self.lease - self.margin

    # ----------------------------------------------------------- heartbeat

    def beat(self) -> None:
        """One round: renew every tracked claim in one call, then the presence."""
        for held in self._renew_all(self._snapshot()):
            # After a reconnect the renewal doubles as the check that the
            # claim survived; only then may a paused runner go on.
            if held.gate.paused and not self._suspended:
                held.gate.resume()
        if self._presence is not None:
            self._heartbeat_presence()
        if self.after_beat is not None:
            try:
                with self.observer.backend_call("load_handovers"):
                    self.after_beat(self._snapshot())
            except FlowbatonError as err:  # the next beat reads it again
                log.warning("reading the handover requests of replica %s failed: %s", self.replica_id, err,
                            extra={"replica_id": self.replica_id})

    def _renew_all(self, tracked: list[Claim[LeasedGate]]) -> list[Claim[LeasedGate]]:
        """Renew the claims in one ``renew_claims`` call (one round trip
        whatever their number: a replica's coordination traffic stays flat);
        the claims that are still ours and were renewed in time."""
        sent = self._clock()
        due = [held for held in tracked if not held.gate.lost and self._before_deadline(held, sent)]
        if not due:
            return []
        try:
            with self.observer.backend_call("renew"):
                lost = self.backend.renew_claims([held.token for held in due], self.lease)
        except BackendUnavailable as err:
            # Not lost yet: the next beat (or each gate's own deadline) fences
            # us if the backend stays away past the lease.
            log.warning("renewal of %d claim(s) failed, will retry: %s", len(due), err,
                        extra={"replica_id": self.replica_id})
            return []
        gone = {(token.flow_id, token.claim_id) for token in lost}
        late = self._clock() > sent + self.lease - self.margin
        renewed = []
        for held in due:
            if (held.token.flow_id, held.token.claim_id) in gone:
                if self._tracked(held):  # else released by its worker meanwhile: fine
                    self._lose(held, "claim lost on renewal")
            elif late:
                self._lose(held, "renewal reply came too late to trust the lease")
            else:
                self._set_deadline(held, sent)
                renewed.append(held)
        return renewed

    def _before_deadline(self, held: Claim[LeasedGate], sent: float) -> bool:
        if sent > held.gate.deadline:
            return self._lose(held, "lease deadline passed before the renewal was sent")
        return True

    def _lose(self, held: Claim[LeasedGate], reason: str) -> bool:
        log.warning("flow %s: %s; starting no further task", held.token.flow_id, reason,
                    extra=self._extra(held.token))
        held.gate.lose(reason)
        return False

    def register(self) -> None:
        """Announce the replica now (raises if the backend is unreachable)."""
        assert self._presence is not None
        sent = self._clock()
        with self.observer.backend_call("register_replica"):
            self.backend.register_replica(self._presence, self.presence_ttl)
        self._presence_until = sent + self.presence_ttl - self.margin

    def announce_draining(self, since: float | None) -> None:
        """Say in the presence record that this replica obeys the drain asked
        at ``since`` (None: it claims again): one write, on a change only.
        A failed write is redone in full by the next heartbeat."""
        if self._presence is None:
            return
        self._presence.draining_since = since
        try:
            self.register()
        except FlowbatonError as err:
            self._presence_until = -math.inf  # the next beat announces it again, whole
            log.warning("announcing the drain of replica %s failed, retried at the next beat: %s",
                        self.replica_id, err, extra={"replica_id": self.replica_id})

    def _heartbeat_presence(self) -> None:
        # A presence that may have expired (process stopped, backend away,
        # session lost) is announced again in full: a bare heartbeat does not
        # bring back a record the backend already dropped.
        sent = self._clock()
        try:
            if sent > self._presence_until:
                self.register()
            else:
                with self.observer.backend_call("heartbeat_replica"):
                    self.backend.heartbeat_replica(self.replica_id, self.presence_ttl)
                self._presence_until = sent + self.presence_ttl - self.margin
        except FlowbatonError as err:
            log.warning("presence heartbeat of replica %s failed: %s", self.replica_id, err,
                        extra={"replica_id": self.replica_id})

    def _extra(self, token: ClaimToken) -> dict[str, object]:
        return {"flow_id": token.flow_id, "replica_id": self.replica_id, "epoch": token.epoch}

    # ------------------------------------------------------- session events

    def _on_session(self, state: str) -> None:
        """Called from the driver's connection thread: decide, never block."""
        self.observer.session_state(state)
        if state == SUSPENDED:
            self._suspended = True
            log.warning("backend session suspended: pausing task starts", extra={"replica_id": self.replica_id})
            for held in self._snapshot():
                held.gate.pause()
        elif state == LOST:
            log.warning("backend session lost: every claim is gone", extra={"replica_id": self.replica_id})
            self._presence_until = -math.inf  # the presence went with the session
            for held in self._snapshot():
                held.gate.lose("backend session lost")
        elif state == CONNECTED:
            # Reconnected: the claims may or may not have survived. The
            # heartbeat thread verifies each by renewing it, then resumes it.
            self._suspended = False
            self._wake.set()

    # -------------------------------------------------------------- thread

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()  # a replica may be started again after a stop
            self._thread = threading.Thread(target=self._loop, name=f"flowbaton-lease-{self.replica_id}",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopping.is_set():
                return
            self.observer.health.tick("lease")
            try:
                self.beat()
            except Exception:  # the heartbeat must outlive any surprise
                log.exception("lease heartbeat round failed", extra={"replica_id": self.replica_id})
