"""``upflows`` as release 1.0 ships it: a, b (may hold), c."""

from __future__ import annotations

from flowbaton.engine import Flow, Linear
from tests.upgrade_code.steps import held, step


def flow() -> Flow:
    return Linear("upflows", step.clone(id="a"), held.clone(id="b"), step.clone(id="c"))
