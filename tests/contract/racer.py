"""Body of a process that races for a claim (run under the 'spawn' start method,
so it must be importable and take only picklable arguments)."""

from __future__ import annotations

from typing import Any

from flowbaton.backends import open_backend
from flowbaton.backends.errors import ClaimHeld


def race_for_claim(url: str, flow_id: str, owner: str, barrier: Any, results: Any) -> None:
    """Open a backend, wait for every racer, claim once, report the outcome."""
    try:
        with open_backend(url) as backend:
            barrier.wait(timeout=60)
            try:
                token = backend.claim(flow_id, owner, 30.0)
            except ClaimHeld:
                results.put((owner, "held", None))
            else:
                results.put((owner, "won", token.claim_id))
    except Exception as err:  # reported to the parent, which fails the test
        results.put((owner, "error", repr(err)))
