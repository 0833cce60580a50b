"""The poison rule: a flow whose claims keep ending in a dead replica is held.

A claim that finds the flow record still naming an owner (its predecessor
never handed the flow back: it died, hung or was fenced) is a takeover.
Takeovers in a row without any task finishing are counted on the record
(``meta.takeovers``, reset whenever ``meta.progress_mark``, the number of
finished tasks, moves), before the factory is imported, so a factory or a
task that kills its process counts too (docs/design.md, "Poison rule").

Counting is the engine's bookkeeping and always happens: operators read the
counter and ``flowbaton retry`` resets it. What count is too many is the
caller's policy: a replica passes a ``PoisonRule`` (its ``max_takeovers``),
``flowbaton.run``, with a person watching, passes none.
"""

from __future__ import annotations

from dataclasses import dataclass

from .meta import FlowMeta

__all__ = ["DEFAULT_RULE", "PoisonRule", "takeovers_after"]


@dataclass(frozen=True)
class PoisonRule:
    """Hold a flow taken over more than ``max_takeovers`` times in a row
    without progress, instead of letting it take every replica down in turn."""

    max_takeovers: int = 3

    def hold_reason(self, takeovers: int) -> str | None:
        """Why a flow with this count must be held now, or None within the limit."""
        if takeovers <= self.max_takeovers:
            return None
        return (f"taken over {takeovers} times without any task finishing (limit {self.max_takeovers}): "
                "a task, or building the flow, may be crashing or hanging its replica")


#: What replicas apply unless told otherwise (``Coordinator(max_takeovers=3)``).
DEFAULT_RULE = PoisonRule()


def takeovers_after(found: FlowMeta, previous_owner: str | None, progress: int) -> int:
    """The counter a new claim writes, from the record as it found it:
    0 once a task finished since the last count (``progress`` differs from
    the mark), one more when the previous owner never handed the flow back,
    else unchanged (a flow handed back gracefully is no takeover)."""
    if progress != found.progress_mark:
        return 0
    return found.takeovers + (1 if previous_owner is not None else 0)
