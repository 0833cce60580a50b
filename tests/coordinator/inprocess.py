"""In-process replicas (``Coordinator`` objects) for tests that need no
subprocess; every replica a test makes is closed after it (fixture
``local_replicas`` in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowbaton.coordinator import Coordinator

from .cluster import STEPS


class LocalReplicas:
    """The replicas one test made, closed together at its end."""

    def __init__(self) -> None:
        self.made: list[Coordinator] = []

    def add(self, backend: Any, **kw: Any) -> Coordinator:
        """A replica allowed to run the test factories, lease 2 s unless told."""
        kw.setdefault("allow", ["tests."])
        kw.setdefault("lease", 2.0)
        coord = Coordinator(backend, **kw)
        self.made.append(coord)
        return coord

    def close(self) -> None:
        for coord in self.made:
            coord.close()


def submit_steps(coord: Coordinator, ledger: Path, n: int = 3, pause: float = 0.01) -> str:
    """A ``steps`` flow of ``n`` tasks that append to ``ledger``."""
    return coord.submit(STEPS, kwargs={"n": n}, inputs={"ledger": str(ledger), "pause": pause})
