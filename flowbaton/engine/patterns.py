"""Flows: tasks wired by patterns that nest.

``Linear`` runs children in order, ``Unordered`` lets them run in parallel,
``Graph`` orders them by data (``requires``/``provides``) and explicit links.
Data dependencies order tasks in every pattern; a pattern only adds edges.
"""

from __future__ import annotations

from typing import Union

from ..backends.errors import DefinitionError
from .task import Task

__all__ = ["Flow", "Linear", "Unordered", "Graph", "Node"]

Node = Union[Task, "Flow"]


class Flow:
    """A named group of tasks and nested flows."""

    kind = "flow"

    def __init__(self, name: str, *children: Node) -> None:
        if not isinstance(name, str) or not name:
            raise DefinitionError(f"a flow needs a name (a non-empty string) first, got {name!r}")
        self.name = name
        self.children: list[Node] = []
        self.add(*children)

    def add(self, *children: Node) -> Flow:
        """Append tasks or nested flows after the children so far (in a
        ``Linear``, the order they run) and return the flow, so calls chain.
        ``DefinitionError`` for anything else, such as a function not
        decorated with ``@task``."""
        for child in children:
            if not isinstance(child, (Task, Flow)):
                raise DefinitionError(
                    f"flow {self.name!r}: {child!r} is not a task or flow "
                    "(decorate functions with @flowbaton.task, instantiate Task classes)"
                )
            self.children.append(child)
        return self

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({len(self.children)} children)>"


class Linear(Flow):
    """Children run one after another."""

    kind = "linear"


class Unordered(Flow):
    """Children have no order among themselves and may run in parallel."""

    kind = "unordered"


class Graph(Flow):
    """Children ordered by data dependencies and explicit ``link`` edges."""

    kind = "graph"

    def __init__(self, name: str, *children: Node) -> None:
        super().__init__(name, *children)
        self.links: list[tuple[Node, Node]] = []

    def link(self, before: Node, after: Node) -> Graph:
        """Run ``after`` only once ``before`` (a child task or flow) is done."""
        for node in (before, after):
            if not any(node is child for child in self.children):
                raise DefinitionError(f"graph {self.name!r}: link to {node!r}, which is not its child")
        self.links.append((before, after))
        return self
