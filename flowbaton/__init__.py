"""flowbaton: multi-step operations that survive the death of the server running them.

This module is the public API. The implementation lives in three layers that
install as ``flowbaton.coordinator`` → ``flowbaton.engine`` →
``flowbaton.backends``.
"""

from __future__ import annotations

import os as _os

# In a source checkout the three layers are top-level folders next to this
# package (pyproject maps them in when installed); let imports find them too,
# so tests and `python -m flowbaton` work from the repository root.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "engine", "__init__.py")):
    __path__.append(_root)

from .backends import open_backend  # noqa: E402
from .backends.errors import (  # noqa: E402
    BackendUnavailable,
    ClaimHeld,
    ClaimLost,
    CorruptRecord,
    CycleError,
    DefinitionError,
    DuplicateTaskId,
    FactoryError,
    FactoryNotAllowed,
    FlowbatonError,
    FlowExists,
    FlowNotFound,
    MissingDriver,
    MissingInputs,
    NotJSONError,
    ResultTooLarge,
)
from .coordinator import Coordinator, connect, run  # noqa: E402
from .engine import (  # noqa: E402
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
from .engine.factory import factory  # noqa: E402
from .engine.timeouts import BuildTimeout, TaskTimeout  # noqa: E402

__version__ = "0.1.0"

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
    "open_backend",
]
