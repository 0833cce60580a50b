"""Fixtures shared by the multi-process coordinator tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import Cluster


@pytest.fixture
def cluster(shared_backend_url: str, tmp_path: Path) -> Iterator[Cluster]:
    made = Cluster(shared_backend_url, tmp_path)
    try:
        yield made
    finally:
        made.close()
        print(made.logs())  # shown by pytest only when the test failed
