"""The contract suite runs on the Redis Cluster too (``redis_cluster``):
every promise of a backend holds there as on one Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backends import backend_params
from tests.conftest import ALL_BACKENDS, CLUSTER, SHARED_BACKENDS, make_url


@pytest.fixture(params=backend_params((*ALL_BACKENDS, CLUSTER)))
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, request, tmp_path)


@pytest.fixture(params=backend_params((*SHARED_BACKENDS, CLUSTER)))
def shared_backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url(request.param, request, tmp_path)
