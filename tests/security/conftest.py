"""Fixtures of the security suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.coordinator.cluster import Cluster

from . import hostile_flows


@pytest.fixture
def gate() -> Iterator[None]:
    """Hung calls of this test hang until its end, then return."""
    hostile_flows.GATE.clear()
    hostile_flows.CALLS.clear()
    try:
        yield
    finally:
        hostile_flows.GATE.set()


@pytest.fixture
def cluster(shared_backend_url: str, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(shared_backend_url, tmp_path)
    try:
        yield made
    finally:
        made.close()
        print(made.logs())  # shown by pytest only when the test failed
