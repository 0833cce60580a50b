"""The one question a runner asks before starting a task: may I?

The coordinator owns the answer (lease renewed in time, session not
suspended, no stop requested); the engine only asks. Keeping it a small
object makes the runner testable without any lease machinery.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Gate"]


class Gate:
    """Open until stopped (graceful) or lost (claim gone); pausable.

    ``pause`` is for a suspended session: no new task starts, but nothing is
    given up yet. ``stop`` asks the runner to finish what runs and hand the
    flow back. ``lose`` means the claim is gone: finish nothing, write nothing.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._paused = False
        self.stop_reason: str | None = None
        self.handover = False  # the stop is an operator's request (the claim history says "handed back")
        self.lost_reason: str | None = None
        self._on_lost: list[Callable[[], None]] = []

    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    @property
    def lost(self) -> bool:
        return self.lost_reason is not None

    def may_start(self) -> bool:
        """True when a new task may start now."""
        return not (self._paused or self.stopped or self.lost)

    def wait_open(self, timeout: float) -> bool:
        """Wait while only paused; True once a task may start."""
        with self._changed:
            self._changed.wait_for(lambda: not self._paused or self.stopped or self.lost, timeout)
        return self.may_start()

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking early on any gate change."""
        with self._changed:
            self._changed.wait(timeout)

    def pause(self) -> None:
        self._set(paused=True)

    def resume(self) -> None:
        self._set(paused=False)

    def stop(self, reason: str, *, handover: bool = False) -> None:
        """Finish what runs, start nothing more, hand the flow back;
        ``handover``: an operator asked for it (a release request, a drain),
        as opposed to this replica stopping."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.handover = handover
        self._set()

    def lose(self, reason: str) -> None:
        with self._changed:
            first = self.lost_reason is None
            if first:
                self.lost_reason = reason
            hooks, self._on_lost = (self._on_lost, []) if first else ([], self._on_lost)
        self._set()
        for hook in hooks:
            hook()

    def when_lost(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` (once, on the thread that loses the gate) when the
        claim is lost; at once if it is lost already. The runner cancels
        its async task calls this way: a lost claim reaches into the task."""
        with self._changed:
            if self.lost_reason is None:
                self._on_lost.append(hook)
                return
        hook()

    def forget(self, hook: Callable[[], None]) -> None:
        """Stop holding ``hook``: its owner is done with the gate. A hook is
        usually a bound method of the run that holds the gate, a reference
        cycle that would leave a finished run (its flow, tasks and results)
        to the cyclic garbage collector, whose full passes pause every
        thread of the process."""
        with self._changed:
            if hook in self._on_lost:
                self._on_lost.remove(hook)

    def expires_in(self) -> float | None:
        """Seconds until the gate closes by itself (a lease deadline: see
        ``coordinator.lease.LeasedGate``); None: never. A runner waiting on
        async task calls wakes then, so a lease that ran out untrusted
        cancels them even while no renewal answers."""
        return None

    @property
    def paused(self) -> bool:
        return self._paused

    def _set(self, paused: bool | None = None) -> None:
        with self._changed:
            if paused is not None:
                self._paused = paused
            self._changed.notify_all()
