"""Fixtures of the security suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.coordinator.cluster import cluster

from . import hostile_flows

__all__ = ["cluster", "gate"]  # cluster: the coordinator suite's fixture


@pytest.fixture
def gate() -> Iterator[None]:
    """Hung calls of this test hang until its end, then return."""
    hostile_flows.GATE.clear()
    hostile_flows.CALLS.clear()
    try:
        yield
    finally:
        hostile_flows.GATE.set()
