"""Bind task parameters to values by name, and results to provided names."""

from __future__ import annotations

from typing import Any

from ..backends.errors import DefinitionError
from .task import FunctionTask, Task

__all__ = ["execute_kwargs", "revert_args", "provided_values"]


def execute_kwargs(task: Task, values: dict[str, Any]) -> dict[str, Any]:
    """Arguments for ``execute``: every required name (the compiler proved it
    is available) and every optional name that has a value."""
    kwargs = {name: values[name] for name in task.task_requires}
    for name in task.task_optional:
        if name in values:
            kwargs[name] = values[name]
    return kwargs


def revert_args(
    task: Task, result: Any, failure: dict[str, str] | None, values: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments for the undo. A class task's ``revert`` gets the result
    first; a function's undo names what it wants: ``result`` (or a provided
    name) for the result, ``failure`` for the failure, inputs by name."""
    named = {"result": result, "failure": failure}
    if result is not None:
        named.update(provided_values(task, result))
    kwargs = {n: named[n] if n in named else values.get(n) for n in task.revert_needs}
    if isinstance(task, FunctionTask):
        return (), kwargs
    kwargs.pop("result", None)
    return (result,), kwargs


def provided_values(task: Task, result: Any) -> dict[str, Any]:
    """The names a result provides to downstream tasks."""
    if not task.task_provides:
        return {}
    return dict(zip(task.task_provides, _split(task, result), strict=False))


def _split(task: Task, result: Any) -> list[Any]:
    names = task.task_provides
    if len(names) <= 1:
        return [result]
    if isinstance(result, dict) and all(n in result for n in names):
        return [result[n] for n in names]
    if isinstance(result, (list, tuple)) and len(result) == len(names):
        return list(result)
    raise DefinitionError(
        f"task {task.task_id!r} provides {list(names)} but returned {type(result).__name__} "
        f"(return a list of {len(names)} values or a dict with those keys)"
    )
