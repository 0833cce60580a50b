"""Counting a claim on its flow record, alone or for a batch of fresh claims.

Every run starts by counting its claim on the flow record before any of the
flow's code runs (``lifecycle.run_flow``): owner, takeovers without
progress (the poison rule), the newest build. A survivor that has just taken
hundreds of orphans over would pay one round trip per flow for that write
before building each; ``count_claims`` writes them in one batch
(``Backend.save_flows``) and hands each worker a flow already counted.

Whatever needs more than the plain count is left to the flow's worker,
which runs the whole attempt itself as for a single claim: a flow not
runnable, not allowed here, too new for this build, over the poison limit,
with a corrupt record, or whose write was refused or may not have landed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend
from ..backends.errors import FlowbatonError
from ..backends.records import ClaimToken, FlowDetail, StoredRun, TaskDetail
from ..backends.states import FAILURE, PENDING, REVERTED, RUNNABLE_FLOW_STATES, RUNNING, SUCCESS
from .builds import check_build, newest_build
from .factory import check_allowed
from .meta import FlowMeta
from .poison import PoisonRule, takeovers_after
from .sizes import fit_flow

__all__ = ["Found", "Prepared", "claim_fields", "count_claims", "counted_meta"]

log = logging.getLogger("flowbaton.engine")


@dataclass(frozen=True)
class Found:
    """The flow record's owner, state and meta as a claim found them,
    before it counted itself on the record."""

    owner: str | None
    state: str
    meta: FlowMeta

    @classmethod
    def of(cls, flow: FlowDetail) -> Found:
        return cls(flow.owner, flow.state, FlowMeta(flow.meta))


@dataclass(frozen=True)
class Prepared:
    """A fresh claim's flow, read in its claim's batch: its record and task
    details, and ``found`` when the claim is counted on that record already
    (``flow`` is then the record as written, ``found`` as it was before)."""

    flow: FlowDetail
    tasks: dict[str, TaskDetail]
    found: Found | None = None


def counted_meta(flow: FlowDetail, found: Found, details: Mapping[str, TaskDetail]) -> tuple[FlowMeta, int]:
    """``flow``'s meta with this claim's poison counters set, and the count
    (``poison.takeovers_after``): progress is the number of tasks that
    ended."""
    progress = sum(1 for d in details.values() if d.state in (SUCCESS, FAILURE, REVERTED))
    count = takeovers_after(found.meta, found.owner, progress)
    return FlowMeta(flow.meta).counted(count, progress), count


def claim_fields(flow: FlowDetail, meta: FlowMeta, found: Found, build: str | None, replica_id: str,
                 epoch: int, at: float) -> dict[str, Any]:
    """What a claim writes on the flow record when it counts itself:
    ``meta`` (its counters set) with the newest build and this claim in the
    claim history, this replica as owner, and a PENDING flow moved to
    RUNNING. One rule for a single claim (``lifecycle``) and a batch
    (``count_claims``)."""
    meta = meta.touched_by(newest_build(found.meta.build, build, flow.id)).claimed(epoch, replica_id, at, found.owner)
    return {
        "meta": meta.to_dict(),
        "owner": replica_id,
        "state": RUNNING if flow.state == PENDING else flow.state,
    }


def count_claims(
    backend: Backend,
    batch: Sequence[tuple[ClaimToken, StoredRun]],
    *,
    replica_id: str,
    allow: Sequence[str] | None,
    poison: PoisonRule | None,
    build: str | None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Prepared]:
    """Count every claim of ``batch`` it can on its flow record, in one
    batched write; a ``Prepared`` for every flow of the batch (counted or
    not). A batch write that fails leaves every flow uncounted: each worker
    counts from the record as it was read, so a write that did land is
    counted once, not twice."""
    prepared = {token.flow_id: Prepared(stored.flow, stored.tasks) for token, stored in batch}
    writes: list[tuple[ClaimToken, FlowDetail, Found]] = []
    for token, stored in batch:
        counted = _counted(stored, token, replica_id, allow, poison, build, clock, backend.max_record_bytes)
        if counted is not None:
            writes.append((token, *counted))
    if not writes:
        return prepared
    try:
        written = backend.save_flows([(token, flow) for token, flow, _ in writes])
    except FlowbatonError as err:
        log.warning("could not count %d claims in one batch, each is counted on its own: %s", len(writes), err,
                    extra={"replica_id": replica_id})
        return prepared
    for (token, flow, found), done in zip(writes, written, strict=True):
        if done:
            prepared[token.flow_id] = Prepared(flow, prepared[token.flow_id].tasks, found)
    return prepared


def _counted(
    stored: StoredRun,
    token: ClaimToken,
    replica_id: str,
    allow: Sequence[str] | None,
    poison: PoisonRule | None,
    build: str | None,
    clock: Callable[[], float],
    limit: int,
) -> tuple[FlowDetail, Found] | None:
    """The flow record this claim writes to count itself, and the record as
    found; None when the flow needs more than that (see the module)."""
    flow = stored.flow
    if flow.state not in RUNNABLE_FLOW_STATES:
        return None
    found = Found.of(flow)
    try:
        check_allowed(flow.factory, allow)
        check_build(flow.id, found.meta, build)
        meta, count = counted_meta(flow, found, stored.tasks)
        if poison is not None and poison.hold_reason(count) is not None:
            return None
        now = clock()
        counted = dataclasses.replace(flow, **claim_fields(flow, meta, found, build, replica_id, token.epoch, now),
                                      updated_at=now, epoch=token.epoch)
        fit_flow(counted, limit)
    except FlowbatonError:  # not allowed, too old a build, a corrupt build, too large: the worker's own path
        return None
    return counted, found
