"""Compile a nested flow into one flat dependency graph of tasks.

Everything the runner needs to schedule incrementally is computed once
here: each task's predecessors and successors, who provides which name, and
every definition error (duplicate ids, cycles, missing inputs) with the
places involved named.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..backends.errors import DefinitionError
from .errors import CycleError, DuplicateTaskId, MissingInputs
from .patterns import Flow, Graph, Linear, Node
from .task import Task

__all__ = ["CompiledFlow", "compile_flow"]


@dataclass
class CompiledFlow:
    """The flat graph. ``order`` is definition order; ``index`` its inverse."""

    name: str
    order: list[str] = field(default_factory=list)
    tasks: dict[str, Task] = field(default_factory=dict)
    places: dict[str, str] = field(default_factory=dict)
    preds: dict[str, set[str]] = field(default_factory=dict)
    succs: dict[str, set[str]] = field(default_factory=dict)
    providers: dict[str, str] = field(default_factory=dict)  # name -> task id
    index: dict[str, int] = field(default_factory=dict)

    def edge(self, before: str, after: str) -> None:
        if before != after:
            self.succs[before].add(after)
            self.preds[after].add(before)


def compile_flow(flow: Flow, inputs: Iterable[str] = ()) -> CompiledFlow:
    """Flatten ``flow``; raise a ``DefinitionError`` subclass naming what is wrong."""
    if not isinstance(flow, Flow):
        raise DefinitionError(f"expected a flow (Linear, Unordered or Graph), got {flow!r}")
    compiled = CompiledFlow(flow.name)
    _add_tasks(compiled, flow, flow.name)
    _add_pattern_edges(compiled, flow)
    _add_data_edges(compiled, set(inputs))
    _check_acyclic(compiled)
    return compiled


def _add_tasks(compiled: CompiledFlow, node: Node, path: str) -> None:
    if isinstance(node, Task):
        place = f"{path} ({node.location()})"
        if node.task_id in compiled.tasks:
            raise DuplicateTaskId(
                f"task id {node.task_id!r} is used twice: at {compiled.places[node.task_id]} "
                f"and at {place}; give one an explicit id (task.clone(id=...))"
            )
        compiled.index[node.task_id] = len(compiled.order)
        compiled.order.append(node.task_id)
        compiled.tasks[node.task_id] = node
        compiled.places[node.task_id] = place
        compiled.preds[node.task_id] = set()
        compiled.succs[node.task_id] = set()
        return
    for child in node.children:
        child_path = f"{path}/{child.name}" if isinstance(child, Flow) else path
        _add_tasks(compiled, child, child_path)


def _members(node: Node) -> list[str]:
    if isinstance(node, Task):
        return [node.task_id]
    return [tid for child in node.children for tid in _members(child)]


def _ends(compiled: CompiledFlow, node: Node) -> tuple[list[str], list[str]]:
    """(sources, sinks) of a node's own subgraph."""
    members = _members(node)
    inside = set(members)
    sources = [t for t in members if not (compiled.preds[t] & inside)]
    sinks = [t for t in members if not (compiled.succs[t] & inside)]
    return sources, sinks


def _connect(compiled: CompiledFlow, before: Node, after: Node) -> None:
    _, sinks = _ends(compiled, before)
    sources, _ = _ends(compiled, after)
    for a in sinks:
        for b in sources:
            compiled.edge(a, b)


def _add_pattern_edges(compiled: CompiledFlow, flow: Flow) -> None:
    for child in flow.children:
        if isinstance(child, Flow):
            _add_pattern_edges(compiled, child)
    if isinstance(flow, Linear):
        chain = [c for c in flow.children if _members(c)]
        for before, after in itertools.pairwise(chain):
            _connect(compiled, before, after)
    elif isinstance(flow, Graph):
        for before, after in flow.links:
            _connect(compiled, before, after)


def _add_data_edges(compiled: CompiledFlow, inputs: set[str]) -> None:
    for tid in compiled.order:
        for name in compiled.tasks[tid].task_provides:
            other = compiled.providers.get(name)
            if other is not None:
                raise DefinitionError(
                    f"{name!r} is provided by two tasks: {other!r} at {compiled.places[other]} "
                    f"and {tid!r} at {compiled.places[tid]}"
                )
            compiled.providers[name] = tid
    missing: list[str] = []
    for tid in compiled.order:
        task = compiled.tasks[tid]
        for name in (*task.task_requires, *task.task_optional):
            provider = compiled.providers.get(name)
            if provider is not None:
                compiled.edge(provider, tid)
            elif name in task.task_requires and name not in inputs:
                missing.append(f"task {tid!r} requires {name!r}")
    if missing:
        raise MissingInputs(
            f"flow {compiled.name!r}: nothing provides: {'; '.join(missing)} "
            "(add a task that provides it or pass it in inputs)"
        )


def _check_acyclic(compiled: CompiledFlow) -> None:
    remaining = {tid: len(compiled.preds[tid]) for tid in compiled.order}
    ready = [tid for tid, count in remaining.items() if count == 0]
    seen = 0
    while ready:
        tid = ready.pop()
        seen += 1
        for nxt in compiled.succs[tid]:
            remaining[nxt] -= 1
            if remaining[nxt] == 0:
                ready.append(nxt)
    if seen != len(compiled.order):
        stuck = {tid for tid, count in remaining.items() if count > 0}
        raise CycleError(f"flow {compiled.name!r} has a cycle: {' -> '.join(_a_cycle(compiled, stuck))}")


def _a_cycle(compiled: CompiledFlow, stuck: set[str]) -> list[str]:
    """Walk predecessors inside the stuck set until a task repeats."""
    path: list[str] = []
    tid = min(stuck, key=compiled.index.__getitem__)
    while tid not in path:
        path.append(tid)
        tid = min(compiled.preds[tid] & stuck, key=compiled.index.__getitem__)
    cycle = [*path[path.index(tid):], tid]
    return list(reversed(cycle))
