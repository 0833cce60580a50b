"""The flow the cluster workload's replicas run: no-op tasks, the last of
which notes the flow's end in the ledger (``peers/common.py``).

Only the last task writes: the workload learns that every flow is done by
reading a file, without asking the servers whose commands it is counting,
and the other tasks stay no-ops, so what is measured is coordination and
persistence, not ledger writes.
"""

from __future__ import annotations

from flowbaton import Flow, Linear, Task

from .peers.common import note

__all__ = ["noop_noted"]


class _NoOp(Task):
    def execute(self) -> None:
        return None


class _NoteEnd(Task):
    def __init__(self, tag: str, ledger: str) -> None:
        super().__init__(id="note-end")
        self.tag = tag
        self.ledger = ledger

    def execute(self) -> None:
        note(self.ledger, "end", self.tag)


def noop_noted(tag: str, count: int, ledger: str) -> Flow:
    """``count`` tasks: ``count - 1`` no-ops, then the ledger line for ``tag``."""
    noops = [_NoOp(id=f"noop-{n}") for n in range(count - 1)]
    return Linear("noop-noted", *noops, _NoteEnd(tag, ledger))
