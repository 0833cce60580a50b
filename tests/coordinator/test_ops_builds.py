"""Builds in the operator commands: ``replicas`` and ``check`` say which live
replicas run which build (and what an unset one costs), ``flows --stranded``
and ``show`` name flows only newer code may run, ``retry --allow-build``
lets older code take them on purpose, ``plan`` says whether this code would
decline a flow. Presence records stand in for replicas, as in test_ops_cli."""

from __future__ import annotations

import pytest

from flowbaton.backends.base import Backend
from flowbaton.engine.builds import UNSET_COST

from .ops_helpers import present, run_cli

# ----------------------------------------------------------------- replicas


def test_replicas_show_each_build_and_what_an_unset_one_costs(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    present(backend, "new", ["tests."], build="2.1")
    present(backend, "old", ["tests."], build="2.0rc1")
    doc = run_cli(capsys, backend, "replicas", "--json").json()
    assert {r["replica_id"]: r["build"] for r in doc["replicas"]} == {"new": "2.1", "old": "2.0rc1"}
    assert list(doc["replicas"][0])[-1] == "build" and doc["unset_builds"] == []
    table = run_cli(capsys, backend, "replicas").stdout
    assert "BUILD" in table and "2.0rc1" in table and UNSET_COST not in table

    present(backend, "bare", ["tests."])
    doc = run_cli(capsys, backend, "replicas", "--json").json()
    assert doc["unset_builds"] == ["bare"]
    assert {r["replica_id"]: r["build"] for r in doc["replicas"]}["bare"] is None
    table = run_cli(capsys, backend, "replicas").stdout.splitlines()
    [row] = [line for line in table if line.startswith("bare")]
    assert " unset " in row
    assert table[-1] == f"warning: 1 live replica(s) without a build (bare): {UNSET_COST}"


def test_check_warns_of_unset_builds_without_failing(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    present(backend, "new", ["tests."], build="2.1")
    out = run_cli(capsys, backend, "check")
    assert out.code == 0 and "warning" not in out.stdout and out.stdout.rstrip().endswith("check: OK")
    present(backend, "bare", ["tests."])
    out = run_cli(capsys, backend, "check")
    assert out.code == 0 and out.stdout.rstrip().endswith("check: OK"), out
    assert f"warning  1 live replica(s) without a build (bare): {UNSET_COST}" in out.stdout.splitlines()
