"""The steps of both ``upflows`` releases: each appends its execution to the
ledger (``tests.coord_flows.record``); ``held`` then waits while the file
named by the ``hold`` input exists, so a test can kill its replica mid-step."""

from __future__ import annotations

import os
import time

from flowbaton.engine import task
from tests.coord_flows import record


@task(id="step")
def step(ledger: str) -> None:
    record(ledger)


@task(id="held")
def held(ledger: str, hold: str = "") -> None:
    """Waits while ``hold`` exists (at most a minute, so a test that forgets
    to remove it ends anyway)."""
    record(ledger)
    deadline = time.monotonic() + 60.0
    while hold and os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.02)
