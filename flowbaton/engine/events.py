"""What a run tells an observer, without knowing who listens.

The coordinator turns these calls into metrics; the engine never imports a
metrics library. The run loop makes one plain method call per event, after
the event's record was written (an outcome whose write was refused did not
happen as far as the store is concerned, so it is not reported either). The
default observer does nothing and allocates nothing.

Observers are called on the run loop's thread: they must be quick and must
not raise (an exception would end the run like any other bug).
"""

from __future__ import annotations

from typing import Protocol

__all__ = [
    "NO_EVENTS",
    "TASK_FAILURE",
    "TASK_OUTCOMES",
    "TASK_RETRY",
    "TASK_REVERT",
    "TASK_REVERT_FAILURE",
    "TASK_SUCCESS",
    "Events",
    "NoEvents",
]

TASK_SUCCESS = "success"  # execute returned; result stored
TASK_FAILURE = "failure"  # execute raised and no retry is left
TASK_RETRY = "retry"  # execute raised; another attempt is scheduled
TASK_REVERT = "revert"  # revert ran and returned
TASK_REVERT_FAILURE = "revert_failure"  # revert raised
TASK_OUTCOMES = (TASK_SUCCESS, TASK_FAILURE, TASK_RETRY, TASK_REVERT, TASK_REVERT_FAILURE)


class Events(Protocol):
    """Observer of runs. ``seconds`` are wall-clock durations taken from the
    records' own timestamps, so every replica measures the same way."""

    def on_task_finished(self, flow_id: str, task_id: str, outcome: str, seconds: float) -> None:
        """One execute or revert call ended with ``outcome`` (a ``TASK_*``)."""

    def on_flow_finished(self, flow_id: str, state: str, seconds: float) -> None:
        """The flow reached ``state`` (SUCCESS, REVERTED, FAILURE, or HELD for
        an operator); ``seconds`` since it was submitted."""

    def on_stuck(self, flow_id: str, task_id: str | None, timeout: float) -> None:
        """A call ran past its bound of ``timeout`` seconds and its thread is
        abandoned, still running: the execute or revert of ``task_id``, or
        (``task_id`` None) the import and build of the flow's factory. Called
        from whichever thread noticed."""

    def on_unstuck(self, flow_id: str, task_id: str | None) -> None:
        """The abandoned call of an earlier ``on_stuck`` returned at last."""


class NoEvents:
    """The default: nobody listens."""

    def on_task_finished(self, flow_id: str, task_id: str, outcome: str, seconds: float) -> None:
        pass

    def on_flow_finished(self, flow_id: str, state: str, seconds: float) -> None:
        pass

    def on_stuck(self, flow_id: str, task_id: str | None, timeout: float) -> None:
        pass

    def on_unstuck(self, flow_id: str, task_id: str | None) -> None:
        pass


NO_EVENTS: Events = NoEvents()
