"""``wait_for_work`` on SQLite: an idle replica watches a counter, not the tables.

The host's processes share no channel to announce a change on, so a waiter
asks its reader connection for ``PRAGMA data_version`` every ``TICK``. The
number moves when another connection commits; SQLite reads it from the WAL
index in shared memory, so an idle tick costs no disk read and no write.

Most commits cannot make work (task saves, renewals, heartbeats): when the
number moved, one statement (``_SUMMARY``) reads what can. A submit raises
the newest flow number; a claim taken or ended changes the count or the sum
of the claim rows' start times (a release and a claim of another flow in
one tick change the sum, unless both started at the very same instant, to
the last bit). Only a change there wakes the waiter, so a busy host does
not wake its idle replicas on every task it runs.

A lease running out commits nothing. The same statement reads the earliest
lease expiry since the last look (``claims_by_expiry`` index); once the
clock passes it, the waiter looks again and wakes if a lease lapsed then,
which is when its flow became an orphan.

State lives across waits, as a watch does: a change made between two waits
wakes the next one at once. One thread waits per backend object (the claim
loop's); a second would share the changes, each seen by one of them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["TICK", "WorkWatch"]

#: How often a waiter looks at the counter: the delay before it wakes.
TICK = 0.05

_DATA_VERSION = "PRAGMA data_version"
# One row: newest flow number, claim rows, sum of their start times, earliest
# expiry after :since. Text sorts above every number, so a hand-edited text
# expiry is the minimum only when no number is left (then ignored below).
_SUMMARY = (
    "SELECT (SELECT max(seq) FROM flows), count(*), total(claimed_at),"
    " (SELECT min(expires_at) FROM claims WHERE expires_at > :since) FROM claims"
)

#: Runs one statement on the reader connection, under its lock; one row.
ReadRow = Callable[[str, Mapping[str, object]], Any]


class WorkWatch:
    """The waiter's memory between looks: the counter, the summary, the
    next lease expiry, and the time up to which lapses are accounted for."""

    def __init__(self, read_row: ReadRow, clock: Callable[[], float], closed: threading.Event) -> None:
        self._read_row = read_row
        self._clock = clock
        self._closed = closed
        self.reset()

    def reset(self) -> None:
        """Forget what was seen (a new reader connection: its counter is
        not comparable with the old one's). A forked child calls it before
        it waits: a new lock, as another thread of the parent may have held
        the old one at fork time."""
        self._lock = threading.Lock()
        self._version: object = None
        self._summary: tuple[Any, ...] | None = None
        self._since = math.nan  # set by the first look
        self._next_expiry = -math.inf  # look at once

    def wait(self, timeout: float) -> bool:
        """True once something that can make work changed, False after
        ``timeout`` seconds or at once after ``close``."""
        deadline = time.monotonic() + timeout
        while not self._closed.is_set():
            if self._changed():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._closed.wait(min(left, TICK))
        return False

    def _changed(self) -> bool:
        with self._lock:
            now = self._clock()
            version = self._read_row(_DATA_VERSION, {})[0]
            moved, self._version = version != self._version, version
            if not moved and now < self._next_expiry:
                return False  # the idle tick: one PRAGMA, nothing else
            return self._look(now)

    def _look(self, now: float) -> bool:
        first = self._summary is None
        # The first look counts from now: rows whose lease ran out before
        # (they stay until the flow is claimed again) are no news.
        since = now if first else self._since
        newest, claims, started, earliest = self._read_row(_SUMMARY, {"since": since})
        summary = (newest, claims, started)
        claims_or_flows = not first and summary != self._summary
        lapsed = not first and _number(earliest) and earliest <= now
        self._summary, self._since = summary, now
        self._next_expiry = earliest if _number(earliest) and earliest > now else math.inf
        if lapsed:
            self._next_expiry = -math.inf  # later expiries: look again next time
        return claims_or_flows or lapsed


def _number(value: object) -> bool:
    return isinstance(value, (int, float))
