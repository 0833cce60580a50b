"""Waiting for a flow to end, from any process, by polling its record.

Polling with backoff is cheap (one read per poll) and works on every
backend; a flow runs for seconds to hours, so the first polls are quick
(a short flow returns fast) and later ones settle at one per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..backends.base import Backend
from ..backends.states import HELD, TERMINAL_FLOW_STATES
from ..engine import FlowReport

__all__ = ["wait_for_flow", "Polls", "SETTLED_STATES"]

# A HELD flow waits for an operator: a waiter learns that at once.
SETTLED_STATES = TERMINAL_FLOW_STATES | {HELD}


class Polls:
    """A waiter's backoff: quick first polls (a short flow returns fast),
    settling at one a second, within ``timeout`` seconds (None: for ever).
    One policy for the threaded waiter below and ``flowbaton.aio``'s."""

    def __init__(self, flow_id: str, timeout: float | None, clock: Callable[[], float]) -> None:
        self.flow_id, self.timeout, self.clock = flow_id, timeout, clock
        self.deadline = None if timeout is None else clock() + timeout
        self._pause = 0.02

    def pause(self, state: str) -> float:
        """Seconds to sleep before the next read of a flow still in
        ``state``; ``TimeoutError`` once the deadline has passed."""
        left = None if self.deadline is None else self.deadline - self.clock()
        if left is not None and left <= 0:
            raise TimeoutError(f"flow {self.flow_id} still {state} after {self.timeout}s")
        pause, self._pause = self._pause, min(self._pause * 1.5, 1.0)
        return pause if left is None else min(pause, left)


def wait_for_flow(
    backend: Backend,
    flow_id: str,
    timeout: float | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> FlowReport:
    """The flow's report once its state is settled; ``TimeoutError`` after
    ``timeout`` seconds (None waits for ever). ``FlowNotFound`` at once."""
    polls = Polls(flow_id, timeout, clock)
    while True:
        flow = backend.load_flow(flow_id)
        if flow.state in SETTLED_STATES:
            return FlowReport.of(flow, backend.load_tasks(flow_id))
        sleep(polls.pause(flow.state))
