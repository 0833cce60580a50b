"""A real crash: the process running a flow is killed with SIGKILL mid-task,
then the flow is resumed elsewhere from what the store holds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.errors import ClaimHeld
from flowbaton.backends.states import SUCCESS
from flowbaton.engine import run_flow
from tests.engine.helpers import claim_of, release_quietly, submit
from tests.servers import until

#: each test runs with plain tasks and again with their async twins
pytestmark = pytest.mark.usefixtures("task_kind")

ROOT = Path(__file__).resolve().parents[2]


def events(ledger: Path) -> list[dict[str, object]]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines() if line.endswith("}")]


def test_sigkill_mid_flow_then_resume(shared_backend_url: str, tmp_path: Path) -> None:
    backend = open_backend(shared_backend_url)
    ledger = tmp_path / "ledger"
    flow = submit(backend, "tests.engine_flows:steps", kwargs={"count": 6},
                  inputs={"ledger": str(ledger), "pause": 0.3})
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.engine.crash_runner", shared_backend_url, flow.id, "1.0"],
                            cwd=ROOT, env=env)
    try:
        until(lambda: any(e["task"] == "step-3" for e in events(ledger)), 30, "step-3 to start")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert backend.load_tasks(flow.id)["step-3"].state == "RUNNING"

    def claim() -> object:
        try:
            return backend.claim(flow.id, "survivor", 30.0)
        except ClaimHeld:
            return None

    token = until(claim, 30, "the dead owner's lease to expire")
    try:
        report = run_flow(backend, claim_of(token), replica_id="survivor", allow=["tests."])
    finally:
        release_quietly(backend, token)
    assert report.state == SUCCESS
    runs: dict[str, list[tuple[int, bool]]] = {}
    for e in events(ledger):
        runs.setdefault(str(e["task"]), []).append((int(e["attempt"]), bool(e["in_doubt"])))  # type: ignore[call-overload]
    assert runs["step-0"] == runs["step-1"] == runs["step-2"] == [(1, False)]  # finished: not again
    assert runs["step-3"] == [(1, False), (2, True)]  # in flight: again, flagged in doubt
    assert runs["step-4"] == runs["step-5"] == [(1, False)]
    assert report.results == {f"step-{n}": f"step-{n}" for n in range(6)}
    stored = backend.load_tasks(flow.id)
    assert stored["step-2"].owner not in (None, "survivor") and stored["step-3"].owner == "survivor"
    assert stored["step-3"].epoch > stored["step-2"].epoch
    backend.close()
