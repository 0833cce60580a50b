"""The soak run before a release: ``pytest -m soak tests/chaos``.

At least 500 flows per backend over ten minutes of randomized faults (every
kind, a new seed each run unless FLOWBATON_SOAK_SEED is set), four replica
processes. The JSON report and the table go to FLOWBATON_SOAK_REPORTS (a
folder; default the test's temporary folder) as chaos-soak-<backend>.json
and .md. FLOWBATON_SOAK_FLOWS and FLOWBATON_SOAK_DURATION scale it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from flowbaton.testing.chaos import ChaosConfig
from flowbaton.testing.chaos.report import table, write_report
from tests.backends import backend_params

from .conftest import CHAOS_BACKENDS, run_and_show, setup_name, violations

pytestmark = [pytest.mark.soak, pytest.mark.slow]


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("backend", backend_params(CHAOS_BACKENDS))
def test_soak(backend: str, chaos_folder: Path, tmp_path: Path) -> None:
    seed = int(os.environ.get("FLOWBATON_SOAK_SEED") or random.SystemRandom().randrange(1, 1_000_000))
    flows = int(os.environ.get("FLOWBATON_SOAK_FLOWS", "600"))
    assert flows >= 500, "a soak run has at least 500 flows"
    config = ChaosConfig(backend=setup_name(backend), flows=flows, replicas=4, seed=seed,
                         duration=float(os.environ.get("FLOWBATON_SOAK_DURATION", "540")), lease=3.0,
                         kwargs={"work": 2.0}, folder=chaos_folder, drain_timeout=300.0)
    report = run_and_show(config)
    reports = Path(os.environ.get("FLOWBATON_SOAK_REPORTS") or tmp_path)
    write_report(report, reports / f"chaos-soak-{backend}.json")
    (reports / f"chaos-soak-{backend}.md").write_text(table(report) + "\n")
    assert violations(report) == {}, f"seed {seed}: invariants violated (see the table above)"
