"""What the engine refuses: a task, flow or factory defined wrongly.

Every one is a ``DefinitionError`` (fix the code or the input; a replica
declines a flow that raises one while building), the category the whole
error tree shares in ``backends.errors``.
"""

from __future__ import annotations

from ..backends.errors import DefinitionError

__all__ = [
    "DuplicateTaskId",
    "CycleError",
    "MissingInputs",
    "FactoryError",
    "FactoryNotAllowed",
    "NotJSONError",
]


class DuplicateTaskId(DefinitionError):
    """Two tasks of one flow share an id; the message names both places."""


class CycleError(DefinitionError):
    """The flow's ordering (data and explicit edges) has a cycle."""


class MissingInputs(DefinitionError):
    """A task requires a value nothing provides (no task, no flow input)."""


class FactoryError(DefinitionError):
    """A factory reference or its arguments cannot be saved or loaded."""


class FactoryNotAllowed(FactoryError):
    """A stored factory name is outside this replica's allowed prefixes."""


class NotJSONError(DefinitionError, TypeError):
    """A value bound for storage is not plain JSON; names the task and path."""
