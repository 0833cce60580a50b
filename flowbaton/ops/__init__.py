"""The operator API: read and manage stored flows and claims from Python.

``flowbaton.ops.connect(url)`` returns an ``Ops`` (``api``): listings with
filters and paging, ``show``, ``timeline`` (``timeline_svg`` draws it),
``claims``, ``replicas``, ``stranded``, ``plan``, ``check``, and the
actions ``release`` (a handover request, or forced), ``drain``, ``cancel``
(optionally reverting), ``retry``, ``purge``, ``delete`` and their bulk
forms. Each returns a typed record whose
``to_json()`` is what the CLI's ``--json`` prints; the CLI is one caller of
these functions, scripts another. Actions write the way a replica does,
under a fenced claim of their own (``actions``); queries (``query``,
``stranded``, ``check``) read (``documents`` are their records).
"""

from __future__ import annotations

from .actions import ActionResult, OpRefused, PurgeReport
from .api import Ops, connect
from .bulk import BulkReport
from .check import CheckReport
from .documents import ClaimRow, FlowPage, FlowPlan, FlowRow, FlowShow, ReplicaRow, ReplicasReport, TaskRow
from .handover import HandoverResult
from .rollback import RollbackReport
from .timeline import Attempt, ClaimSpan, Takeover, TaskLine, Timeline

__all__ = [
    "Ops", "connect", "OpRefused", "ActionResult", "PurgeReport", "BulkReport", "CheckReport", "ClaimRow",
    "FlowPage", "FlowPlan", "FlowRow", "FlowShow", "ReplicaRow", "ReplicasReport", "TaskRow", "HandoverResult",
    "RollbackReport", "Timeline", "TaskLine", "Attempt", "ClaimSpan", "Takeover",
]
