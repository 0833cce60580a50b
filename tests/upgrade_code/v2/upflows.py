"""``upflows`` as release 2.0 ships it: a, b (may hold), then the new step
x, then c. Finishing a flow that ran here on 1.0 code would skip x."""

from __future__ import annotations

from flowbaton.engine import Flow, Linear
from tests.upgrade_code.steps import held, step


def flow() -> Flow:
    return Linear("upflows", step.clone(id="a"), held.clone(id="b"), step.clone(id="x"), step.clone(id="c"))
