"""The bounded chaos run of CI: every backend, every fault kind, fixed seeds.

About a minute per backend: 100 flows over 30 s of faults on 3 replica
processes with a 2 s lease (ZooKeeper: a local ensemble of three; Redis: a
primary with a replica and three sentinels; Redis Cluster: three primaries
with a replica each, whose primaries are killed and cut). The build fails on any
invariant violation; the table printed on failure names the flows, and the
run folder (history, ledger, replica logs, report.json) holds the evidence.
Replay a failure with ``python -m flowbaton.testing.chaos`` and the same
backend, flows, duration and seed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbaton.testing.chaos import ChaosConfig
from tests.backends import backend_params

from .conftest import CHAOS_BACKENDS, run_and_show, setup_name, violations

pytestmark = pytest.mark.slow

SEEDS = {"sqlite": 101, "zookeeper": 202, "redis": 303, "redis_cluster": 404}


@pytest.mark.parametrize("backend", backend_params(CHAOS_BACKENDS))
def test_bounded_chaos_run(backend: str, chaos_folder: Path) -> None:
    config = ChaosConfig(backend=setup_name(backend), flows=100, replicas=3, seed=SEEDS[backend], duration=30.0,
                         lease=2.0, folder=chaos_folder, drain_timeout=60.0)
    report = run_and_show(config)
    assert violations(report) == {}, "invariants violated (see the table above)"
    happened = {fault["kind"] for fault in report["faults"]}
    assert happened == set(report["run"]["fault_kinds"]), "every fault kind must occur at least once"
    assert report["totals"]["flows"] == 100
    deploys = [fault["detail"]["builds"] for fault in report["faults"] if fault["kind"] == "deploy"]
    assert all(len(set(builds.values())) > 1 for builds in deploys), "a deploy leaves old and new builds side by side"
    assert report["invariants"]["8"]["checked"] >= report["totals"]["executions"] > 0
