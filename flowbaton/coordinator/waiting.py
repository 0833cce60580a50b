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

__all__ = ["wait_for_flow", "SETTLED_STATES"]

# A HELD flow waits for an operator: a waiter learns that at once.
SETTLED_STATES = TERMINAL_FLOW_STATES | {HELD}


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
    deadline = None if timeout is None else clock() + timeout
    pause = 0.02
    while True:
        flow = backend.load_flow(flow_id)
        if flow.state in SETTLED_STATES:
            return FlowReport.of(flow, backend.load_tasks(flow_id))
        left = None if deadline is None else deadline - clock()
        if left is not None and left <= 0:
            raise TimeoutError(f"flow {flow_id} still {flow.state} after {timeout}s")
        sleep(pause if left is None else min(pause, left))
        pause = min(pause * 1.5, 1.0)
