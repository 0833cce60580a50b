"""``wait_for_work``: wake idle replicas only when there may be work.

Two one-shot watches, re-armed as they fire:

- a child watch on ``claims/``: a claim znode that disappears is an orphan
  (its owner's session ended) or a release. New claims fire the watch too;
  the re-arming listing is compared with the previous one so that only a
  *removal* wakes the waiter.
- a data watch on ``signal``, whose data every ``create_flow`` sets in its
  own ``multi``. A submit therefore costs each idle replica one wake-up and
  one ``find_runnable`` (two child listings), never a re-list of every flow;
  a burst of submits coalesces into as many wake-ups as there are re-arms.

Watches can be missed across a session loss (kazoo drops them; we re-arm on
the next call), so the coordinator still rescans every few seconds.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kazoo.protocol.states import EventType

__all__ = ["WorkSignal"]

log = logging.getLogger(__name__)


class WorkSignal:
    """A sticky "something changed" flag fed by the two watches."""

    def __init__(self, client: Any, claims_path: str, signal_path: str) -> None:
        self._client = client
        self._claims_path = claims_path
        self._signal_path = signal_path
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._armed = {"claims": False, "signal": False}
        self._known_claims: set[str] | None = None
        self._closed = False

    # ----------------------------------------------------------- public

    def clear(self) -> None:
        """Forget earlier changes: the caller is about to read fresh state."""
        self._changed.clear()

    def wake(self) -> None:
        self._changed.set()

    def wait(self, timeout: float) -> bool:
        self.arm()
        fired = self._changed.wait(timeout)
        self._changed.clear()
        return fired and not self._closed

    def close(self) -> None:
        self._closed = True
        self._changed.set()

    def arm(self) -> None:
        """Register whichever watch is not registered (cheap when both are)."""
        for which in ("claims", "signal"):
            if self._take(which):
                self._register(which)

    # --------------------------------------------------------- internals

    def _take(self, which: str) -> bool:
        with self._lock:
            if self._armed[which] or self._closed:
                return False
            self._armed[which] = True
            return True

    def _disarm(self, which: str) -> None:
        with self._lock:
            self._armed[which] = False

    def _register(self, which: str) -> None:
        try:
            if which == "claims":
                result = self._client.get_children_async(self._claims_path, watch=self._claims_fired)
                result.rawlink(self._claims_listed)
            else:
                result = self._client.exists_async(self._signal_path, watch=self._signal_fired)
                result.rawlink(self._signal_registered)
        except Exception as err:  # client closed or not connected: try on the next call
            log.debug("cannot arm %s watch: %r", which, err)
            self._disarm(which)

    def _claims_listed(self, result: Any) -> None:
        try:
            names = set(result.get_nowait())
        except Exception:
            self._disarm("claims")  # the request failed, so no watch is set
            return
        with self._lock:
            before, self._known_claims = self._known_claims, names
        if before is not None and before - names:
            self._changed.set()

    def _signal_registered(self, result: Any) -> None:
        try:
            result.get_nowait()
        except Exception:
            self._disarm("signal")

    def _claims_fired(self, event: Any) -> None:
        self._fired("claims", event)

    def _signal_fired(self, event: Any) -> None:
        self._fired("signal", event)
        self._changed.set()

    def _fired(self, which: str, event: Any) -> None:
        # Runs on kazoo's callback thread: only async calls from here.
        self._disarm(which)
        if event.type == EventType.NONE:  # session reset: watches are gone
            self._changed.set()
            return
        self.arm()
