"""Fixtures shared by the multi-process coordinator tests."""

import pytest

from .cluster import cluster  # the fixture (defined there, shared with tests/security)

__all__ = ["cluster"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the failover tests whose point is not the backend on the
    Redis Cluster (``test_failover.ON_ONE_REDIS``): deselected, not skipped."""
    from .test_failover import ON_ONE_REDIS

    def left_out(item: pytest.Item) -> bool:
        name = item.nodeid
        return "test_failover.py::" in name and "redis_cluster" in name and any(p in name for p in ON_ONE_REDIS)

    dropped = [item for item in items if left_out(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if not left_out(item)]
