"""A flow whose stored record cannot be read is held once, for the whole cluster.

Skipping it locally is not enough: every replica would claim it again after
its backoff, for ever, each time failing the same way. So the replica that
meets the damage holds the flow under its claim, which takes it out of every
replica's discovery (HELD is not runnable) and shows it to operators with
the reason (``flows --state HELD``, ``show``).

When the flow record itself is unreadable there is nothing to set HELD on:
it is replaced by a placeholder that keeps the flow id, the error and the
start of the old bytes (``FlowMeta.corrupt``). Tasks and declines stay
as they are. The placeholder cannot be retried (there is no factory to run);
``flowbaton delete FLOW_ID --force`` removes the flow.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..backends.base import Backend
from ..backends.errors import CorruptRecord
from ..backends.records import ClaimToken, FlowDetail
from ..backends.states import HELD, RUNNABLE_FLOW_STATES
from ..engine.meta import CORRUPT, FlowMeta

__all__ = ["CORRUPT_KEY", "hold_corrupt", "placeholder"]

#: The flow.meta key of a placeholder (``engine.meta.CORRUPT``), under its
#: older name for the code that still imports it from here.
CORRUPT_KEY = CORRUPT


def placeholder(flow_id: str, err: CorruptRecord, replica_id: str, now: float, epoch: int) -> FlowDetail:
    """The HELD record written over an unreadable flow record."""
    reason = (f"the stored flow record could not be read ({err}); replica {replica_id} held the flow "
              f"with this placeholder (tasks and declines kept): remove it with "
              f"`flowbaton delete {flow_id} --force`")
    meta = FlowMeta.placeholder(err.where, err.what, err.raw, replica_id, now).to_dict()
    return FlowDetail(id=flow_id, name="(unreadable record)", factory="", state=HELD, created_at=now,
                      updated_at=now, epoch=epoch, reason=reason, meta=meta)


def hold_corrupt(backend: Backend, token: ClaimToken, err: CorruptRecord, replica_id: str,
                 clock: Callable[[], float] = time.time) -> str | None:
    """Hold the flow ``token`` claims because reading it raised ``err``.
    Returns what was done, or None when the flow (now readable) is not
    runnable and needs nothing. Raises the backend's errors (``ClaimLost``:
    someone else decides now)."""
    now = clock()
    try:
        flow = backend.load_flow(token.flow_id)
    except CorruptRecord as unreadable:
        backend.save_flow(token, placeholder(token.flow_id, unreadable, replica_id, now, token.epoch))
        return "replaced the unreadable flow record with a HELD placeholder"
    if flow.state not in RUNNABLE_FLOW_STATES:
        return None
    flow.state, flow.owner, flow.epoch, flow.updated_at = HELD, None, token.epoch, now
    flow.reason = f"cannot run: {err}"
    backend.save_flow(token, flow)
    return "held the flow"
