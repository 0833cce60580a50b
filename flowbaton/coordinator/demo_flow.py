"""Where the demo's factory was stored before the demo moved to ``flowbaton.demo``.

Flow records keep their factory's name, so flows submitted by an earlier
release (the demo, the failover benchmark) name
``flowbaton.coordinator.demo_flow:provision``. This module keeps that name
resolving: a function of its own (the factory rules accept only a function
defined in the module its name names), which builds today's demo flow. A
replica must still allow the old name to run such a flow; new flows store
``flowbaton.demo.flows:provision``. Remove once no stored flow names it.
"""

from __future__ import annotations

from ..demo import flows
from ..engine import Flow

__all__ = ["provision"]


def provision() -> Flow:
    return flows.provision()
