"""One retry loop for the drivers: a step that may have landed is told so.

A request whose reply was lost (connection reset, timeout, a failover) may
or may not have been applied by the server. Retrying it blindly would claim
a flow twice or report ``FlowExists`` for our own create. So the loop tells
the step, on every attempt after a transient error, that an earlier attempt
may have landed (``retried``); the step then reads back what that attempt
did before doing it again (see ``Backend.claim``).

What is transient, the budget and the pause between attempts are each
driver's, given as a ``RetryPolicy`` value; so are the log lines
(``on_retry``) and the translation of the last error, which ``run``
re-raises unchanged for the driver to map into the flowbaton error tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_delay
from tenacity.wait import wait_base

__all__ = ["OnRetry", "RetryPolicy", "Step"]

T = TypeVar("T")

#: ``step(retried)``: one attempt; ``retried`` is True when an earlier
#: attempt failed transiently and so may have been applied.
Step = Callable[[bool], T]
#: Called before the pause that follows a failed attempt (for logging, or
#: to repair the connection, e.g. reload scripts after NOSCRIPT).
OnRetry = Callable[[RetryCallState], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a driver retries, and which errors."""

    #: seconds from the first attempt; then the last error is raised
    deadline: float
    #: pause between attempts (a tenacity wait strategy)
    wait: wait_base
    #: errors worth another attempt; any other error is raised at once
    transient: Callable[[BaseException], bool]

    def run(self, step: Step[T], on_retry: OnRetry | None = None) -> T:
        """``step(retried)`` until it returns, fails with an error that is
        not transient, or the deadline passes; the last error is re-raised
        as it is."""
        for attempt in self._retrying(on_retry):
            with attempt:
                return step(attempt.retry_state.attempt_number > 1)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _retrying(self, on_retry: OnRetry | None) -> Retrying:
        return Retrying(
            stop=stop_after_delay(self.deadline),
            wait=self.wait,
            retry=retry_if_exception(self.transient),
            before_sleep=on_retry,
            reraise=True,
        )
