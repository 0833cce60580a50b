"""Pure scheduling: which task may start next, which may be reverted next.

No I/O here, so the ordering rules are unit-testable on their own. Both
schedules are incremental (counters per task, a heap of ready tasks), so the
cost per task stays flat however large the flow grows.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from .compiler import CompiledFlow

__all__ = ["ForwardSchedule", "RevertSchedule"]


class ForwardSchedule:
    """Tasks become ready when every predecessor has a result. Among ready
    tasks the one defined first goes first (so after a resume, today's order
    decides: a task added before an in-doubt task runs before it)."""

    def __init__(self, compiled: CompiledFlow, done: Iterable[str]) -> None:
        self._compiled = compiled
        finished = set(done)
        self._waiting = {
            tid: len(compiled.preds[tid] - finished) for tid in compiled.order if tid not in finished
        }
        self._ready = [(compiled.index[t], t) for t, n in self._waiting.items() if n == 0]
        heapq.heapify(self._ready)

    def has_ready(self) -> bool:
        return bool(self._ready)

    def pop(self) -> str:
        return heapq.heappop(self._ready)[1]

    def finished(self, tid: str) -> None:
        """``tid`` succeeded: its successors may become ready."""
        for nxt in self._compiled.succs[tid]:
            left = self._waiting.get(nxt)
            if left is None:
                continue
            self._waiting[nxt] = left - 1
            if left == 1:
                heapq.heappush(self._ready, (self._compiled.index[nxt], nxt))


class RevertSchedule:
    """Undo in reverse dependency order: a task is reverted only after every
    successor that also needs undoing has been reverted. Every successor of a
    task that ran needed all its predecessors done, so direct successors are
    enough to order the whole set."""

    def __init__(self, compiled: CompiledFlow, to_revert: Iterable[str]) -> None:
        self._compiled = compiled
        self._todo = set(to_revert)
        self._blockers = {t: len(compiled.succs[t] & self._todo) for t in self._todo}
        self._ready = [(-compiled.index[t], t) for t, n in self._blockers.items() if n == 0]
        heapq.heapify(self._ready)

    def has_ready(self) -> bool:
        return bool(self._ready)

    def pop(self) -> str:
        return heapq.heappop(self._ready)[1]

    def reverted(self, tid: str) -> None:
        for prev in self._compiled.preds[tid]:
            if prev in self._blockers:
                self._blockers[prev] -= 1
                if self._blockers[prev] == 0:
                    heapq.heappush(self._ready, (-self._compiled.index[prev], prev))
