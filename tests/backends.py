"""Which backends a run tests: all of them, or those named in
``FLOWBATON_TEST_BACKENDS`` (comma-separated); ZooKeeper and Redis params
carry their markers so ``-m`` can select them."""

from __future__ import annotations

import os
from collections.abc import Iterable

import pytest

__all__ = ["ENV", "backend_params"]

ENV = "FLOWBATON_TEST_BACKENDS"


def backend_params(kinds: Iterable[str]) -> list[object]:
    """One ``pytest.param`` per selected kind, in the order given."""
    wanted = os.environ.get(ENV)
    names = {name.strip() for name in wanted.split(",")} if wanted else None
    return [pytest.param(kind, marks=_marks(kind), id=kind) for kind in kinds if names is None or kind in names]


def _marks(kind: str) -> list[pytest.MarkDecorator]:
    if kind in ("zookeeper", "redis"):
        return [getattr(pytest.mark, kind)]
    if kind == "redis_cluster":
        return [pytest.mark.redis]
    return []
