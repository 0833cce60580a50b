"""A claim as its holder carries it: one object from the claim to the run.

The backend's ``ClaimToken`` fences every write; the ``Gate`` answers
"may I start a task?"; ``sent_at`` is when the claim request left, so the
latest moment its lease can have begun (docs/design.md, "Renewal and
self-fencing"). The three always travel together, from where the claim is
granted, through the worker, to the run loop, so they are one value. The
gate's type is the holder's: the coordinator's ``LeasedGate`` also closes
by itself at the lease deadline, and its lease keeper needs that type back;
the engine asks any ``Gate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from ..backends.records import ClaimToken
from .gate import Gate

__all__ = ["Claim"]

GateT = TypeVar("GateT", bound=Gate, covariant=True)


@dataclass(frozen=True)
class Claim(Generic[GateT]):
    """A claim held on one flow: its token, its gate, when it was asked for
    (a monotonic time)."""

    token: ClaimToken
    gate: GateT
    sent_at: float

    @property
    def flow_id(self) -> str:
        return self.token.flow_id

    @property
    def epoch(self) -> int:
        return self.token.epoch

    @property
    def claim_id(self) -> str:
        return self.token.claim_id
