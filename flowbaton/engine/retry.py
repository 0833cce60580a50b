"""Ask a task's tenacity strategies whether and when to try again.

The attempt count comes from the stored detail, so a flow resumed on
another replica keeps counting where the dead owner stopped.
"""

from __future__ import annotations

import time
from typing import Any

from tenacity import RetryCallState, Retrying

from .task import Retry

__all__ = ["next_delay"]


def next_delay(policy: Retry | None, attempt: int, error: BaseException, first_started: float) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None to give up.

    ``first_started`` is the wall-clock start of attempt 1 (stored), so
    time-based stops such as ``stop_after_delay`` survive a takeover.
    """
    if policy is None or not isinstance(error, policy.on):
        return None
    state: Any = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    now = time.monotonic()
    state.start_time = now - max(0.0, time.time() - first_started)
    state.set_exception((type(error), error, error.__traceback__))
    state.outcome_timestamp = now
    if policy.stop(state):
        return None
    return float(policy.wait(state))
