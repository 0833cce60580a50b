"""``flowbaton.ops.connect()`` without a URL finds the store as the CLI does."""

from __future__ import annotations

from pathlib import Path

import pytest

import flowbaton.ops
from flowbaton.backends import open_backend
from flowbaton.engine import new_flow_detail
from flowbaton.ops.actions import OpRefused


def _store_one_flow(url: str) -> str:
    backend = open_backend(url)
    try:
        detail = new_flow_detail("tests.engine_flows:steps", kwargs={"count": 1})
        backend.create_flow(detail)
        return detail.id
    finally:
        backend.close()


def test_without_a_url_it_opens_the_backend_of_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    flow_id = _store_one_flow(url)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOWBATON_BACKEND", url)
    with flowbaton.ops.connect() as ops:
        assert [row.id for row in ops.flows()] == [flow_id]


def test_without_a_url_it_opens_the_working_directorys_store_if_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWBATON_BACKEND", raising=False)
    flow_id = _store_one_flow("sqlite:///./flowbaton.db")
    with flowbaton.ops.connect() as ops:
        assert [row.id for row in ops.flows()] == [flow_id]


def test_without_a_url_or_a_store_it_refuses_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWBATON_BACKEND", raising=False)
    with pytest.raises(OpRefused, match=r"flowbaton\.db does not exist here"):
        flowbaton.ops.connect()
    assert list(tmp_path.iterdir()) == []
