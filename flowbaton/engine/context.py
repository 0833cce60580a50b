"""``current_task()``: what a running task may know about itself.

Tasks are at-least-once. The idempotency key is the same for every attempt
and every owner, so a task can de-duplicate its side effects; ``in_doubt``
says this attempt follows one whose owner died mid-task.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..backends.errors import FlowbatonError

__all__ = ["TaskContext", "current_task", "task_context"]


@dataclass(frozen=True)
class TaskContext:
    """What a running task may know about itself (``current_task()``):
    ``flow_id`` and ``task_id``; ``attempt``, 1 for the first call, then
    2, 3, ... across retries and owners; ``in_doubt``, this attempt
    follows one whose owner died (or was fenced) during the task, so the
    work may be done already; ``replica_id`` and ``epoch``, who runs this
    attempt under which claim. In a revert, ``attempt`` is the attempt
    being undone and ``in_doubt`` is False."""

    flow_id: str
    task_id: str
    attempt: int
    in_doubt: bool
    replica_id: str
    epoch: int

    @property
    def idempotency_key(self) -> str:
        """``"<flow id>/<task id>"``: the same for every attempt, every owner and
        after an operator's retry, so an API that de-duplicates by a key you
        choose acts once however often the task runs. It is the same in the
        task's revert too: derive another key for an undo that calls the
        same API."""
        return f"{self.flow_id}/{self.task_id}"


_current: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "flowbaton_task", default=None
)


def current_task() -> TaskContext:
    """The context of the task running in this thread."""
    ctx = _current.get()
    if ctx is None:
        raise FlowbatonError("flowbaton.current_task() called outside a running task")
    return ctx


@contextmanager
def task_context(ctx: TaskContext | None) -> Iterator[None]:
    """Make ``ctx`` what ``current_task()`` returns in this thread, for a while."""
    token = _current.set(ctx)
    try:
        yield
    finally:
        _current.reset(token)
