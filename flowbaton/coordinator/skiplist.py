"""Flows this replica should leave alone for a while, and why.

A replica that cannot run a flow (its factory is not allowed or not
importable here, or its record is corrupt) must not try again on every poll:
that would cost the backend a claim per poll and starve flows it can run.
It remembers the flow locally until a deadline; other replicas are not
affected, so a replica with the right code still picks the flow up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["SkipList"]


class SkipList:
    """flow id -> (monotonic deadline, reason)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def add(self, flow_id: str, seconds: float, reason: str) -> None:
        with self._lock:
            self._until[flow_id] = (self._clock() + seconds, reason)

    def skipped(self, flow_id: str) -> bool:
        """True while the flow is to be left alone; forgets expired entries."""
        with self._lock:
            entry = self._until.get(flow_id)
            if entry is not None and entry[0] <= self._clock():
                del self._until[flow_id]
                entry = None
            return entry is not None

    def __len__(self) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for until, _ in self._until.values() if until > now)

    def reasons(self) -> dict[str, str]:
        with self._lock:
            now = self._clock()
            return {fid: why for fid, (until, why) in self._until.items() if until > now}
