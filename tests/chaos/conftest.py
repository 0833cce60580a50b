"""Shared pieces of the chaos tests: which backends to run, and running one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowbaton.testing.chaos import ChaosConfig, run_chaos
from flowbaton.testing.chaos.report import table

CHAOS_BACKENDS = ("sqlite", "zookeeper", "redis", "redis_cluster")


def setup_name(backend: str) -> str:
    """The chaos harness's name of a test backend (``redis_cluster`` -> ``redis-cluster``)."""
    return backend.replace("_", "-")


def run_and_show(config: ChaosConfig) -> dict[str, Any]:
    """Run; print the table (pytest shows it when the test fails) and where
    the evidence is."""
    report = run_chaos(config)
    print(table(report))
    print(f"run folder: {report['run']['folder']}")
    return report


def violations(report: dict[str, Any]) -> dict[str, int]:
    return {number: item["violations"] for number, item in report["invariants"].items() if item["violations"]}


@pytest.fixture
def chaos_folder(tmp_path: Path) -> Path:
    return tmp_path / "run"
