"""Every engine test starts with no simulated deploy and no recorded calls."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import engine_flows as ef


@pytest.fixture(autouse=True)
def clean_deploy() -> Iterator[None]:
    ef.DEPLOY.clear()
    ef.CALLS.clear()
    yield
    ef.DEPLOY.clear()
    ef.CALLS.clear()
