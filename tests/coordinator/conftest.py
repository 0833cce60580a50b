"""Fixtures shared by the multi-process coordinator tests."""

from .cluster import cluster  # the fixture (defined there, shared with tests/security)

__all__ = ["cluster"]
