"""The coordinator: replicas that claim, renew, hand over and take over flows.

Public entry points: ``connect`` (a replica and client), ``Coordinator``,
and ``run`` (one flow, here and now). ``flowbaton`` re-exports them.
"""

from __future__ import annotations

from .lease import LeasedGate, LeaseKeeper
from .local import run
from .replica import Coordinator, connect
from .waiting import wait_for_flow

__all__ = ["Coordinator", "LeaseKeeper", "LeasedGate", "connect", "run", "wait_for_flow"]
