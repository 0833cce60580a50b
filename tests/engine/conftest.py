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


@pytest.fixture(params=["sync", "async"])
def task_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with plain tasks, then with their ``async def`` twins
    (``tests.engine_flows.kind``); subprocesses inherit the choice."""
    kind: str = request.param
    monkeypatch.setenv(ef.TASK_KIND, kind)
    return kind
