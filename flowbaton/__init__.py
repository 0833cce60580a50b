"""flowbaton: multi-step operations that survive the death of the server running them.

This module is the public API. The implementation lives in packages that
import only downward (docs/design.md, "Layers"): ``cli`` → ``ops`` →
``coordinator`` → ``observability`` → ``engine`` → ``backends``, and
``aio`` (the asyncio face of this API) over ``coordinator``; ``demo``
holds the demo's flows (engine only) and ``testing`` the fault-injection
harness, which nothing in the product imports.
"""

from __future__ import annotations

from . import aio
from ._version import __version__
from .backends import open_backend
from .backends.errors import (
    BackendUnavailable,
    ClaimHeld,
    ClaimLost,
    CorruptRecord,
    DefinitionError,
    FlowbatonError,
    FlowExists,
    FlowNotFound,
    MissingDriver,
    ResultTooLarge,
)
from .coordinator import Coordinator, connect, run
from .engine import (
    Flow,
    FlowReport,
    Graph,
    Linear,
    Retry,
    Task,
    TaskContext,
    Unordered,
    current_task,
    register_codec,
    task,
)
from .engine.errors import CycleError, DuplicateTaskId, FactoryError, FactoryNotAllowed, MissingInputs, NotJSONError
from .engine.factory import factory
from .engine.timeouts import BuildTimeout, TaskTimeout

__all__ = [
    "BackendUnavailable",
    "Coordinator",
    "Flow",
    "FlowReport",
    "Graph",
    "Linear",
    "Retry",
    "Task",
    "TaskContext",
    "Unordered",
    "connect",
    "current_task",
    "factory",
    "register_codec",
    "run",
    "task",
    "ClaimHeld",
    "ClaimLost",
    "CorruptRecord",
    "CycleError",
    "DefinitionError",
    "DuplicateTaskId",
    "FactoryError",
    "FactoryNotAllowed",
    "FlowExists",
    "FlowNotFound",
    "FlowbatonError",
    "MissingDriver",
    "MissingInputs",
    "NotJSONError",
    "ResultTooLarge",
    "TaskTimeout",
    "BuildTimeout",
    "__version__",
    "aio",
    "open_backend",
]
