"""The flow page's buttons: release, cancel, retry, each one ``Ops`` call.

The same calls as ``flowbaton release/cancel/retry FLOW_ID`` with no
options: release is the handover request (the owner hands the flow back
after its running tasks; nothing runs twice), cancel reverts nothing, retry
puts the whole flow back. Forcing and reverting stay on the command line,
where the operator reads the warning first. A refusal (``OpRefused``, a claim
another operator holds, a full mailbox) is the message shown, and changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..backends.errors import ClaimError, MailboxFull
from ..ops import OpRefused, Ops

__all__ = ["ACTIONS", "Outcome", "act"]

ACTIONS: dict[str, Callable[[Ops, str], Any]] = {
    "release": lambda ops, flow_id: ops.release(flow_id),
    "cancel": lambda ops, flow_id: ops.cancel(flow_id),
    "retry": lambda ops, flow_id: ops.retry(flow_id),
}


@dataclass(frozen=True)
class Outcome:
    done: bool
    message: str


def act(ops: Ops, action: str, flow_id: str) -> Outcome:
    """Run ``action`` (a key of ``ACTIONS``) on the flow and say what it did."""
    try:
        result = ACTIONS[action](ops, flow_id)
    except (OpRefused, ClaimError, MailboxFull) as err:
        return Outcome(False, f"{action} refused: {err}")
    return Outcome(True, str(result.describe()))
