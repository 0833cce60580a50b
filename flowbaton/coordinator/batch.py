"""Reading and counting a batch of fresh claims before their workers start.

A survivor that takes hundreds of orphans over in one ``claim_many`` would
otherwise read each flow (records and tasks) and count its claim on the flow
record (a write) from each worker's thread: three round trips per flow, most
of a mass takeover's time on a small machine. Here the batch costs one
``load_runs`` and one ``save_flows`` (``engine.counting``); a worker whose
flow is not in the result reads and counts on its own, as for a single
claim.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..backends.base import Backend
from ..backends.records import ClaimToken
from ..engine.counting import Prepared, count_claims
from .worker import WorkerSettings

__all__ = ["prepare_batch"]


def prepare_batch(backend: Backend, tokens: Sequence[ClaimToken], settings: WorkerSettings) -> dict[str, Prepared]:
    """The flows of claims just granted, read and counted in a few round
    trips; flows left out are read by their workers."""
    stored = backend.load_runs([token.flow_id for token in tokens])
    batch = [(token, stored[token.flow_id]) for token in tokens if token.flow_id in stored]
    if not batch:
        return {}
    return count_claims(backend, batch, replica_id=settings.replica_id, allow=settings.allow,
                        poison=settings.poison, build=settings.build)
