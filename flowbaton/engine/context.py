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
    flow_id: str
    task_id: str
    attempt: int
    in_doubt: bool
    replica_id: str
    epoch: int

    @property
    def idempotency_key(self) -> str:
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
