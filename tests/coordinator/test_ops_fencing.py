"""Operator actions against replicas that are running flows, on every backend.

Replicas run in this process (``connect().start()``, each with its own
backend connection; on ``memory://`` they share the one store), so every
backend gets the same proofs in a few seconds. The proofs come from two
records, as in test_failover.py: the ledger every task execution appends to,
and the stored task details with the epoch of the claim that wrote them.
A task starts only after its RUNNING record was written under the claim, so
"every started task has a record written under the fenced claim before the
action" proves that nothing started after it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.base import Backend
from flowbaton.backends.records import TaskDetail
from flowbaton.backends.states import CANCELLED, FAILURE, HELD, REVERTED, RUNNING, SUCCESS
from flowbaton.coordinator import Coordinator, connect
from flowbaton.ops import actions as ops
from tests.servers import until

from .cluster import STEPS, Run, read_runs
from .ops_helpers import run_cli

pytestmark = pytest.mark.slow


class Replicas:
    """In-process replicas on one backend URL, a ledger, and an observer."""

    def __init__(self, url: str, folder: Path) -> None:
        self.shared = open_backend(url) if url.startswith("memory:") else None
        self.url = url
        self.backend: Backend = self.shared or open_backend(url)
        self.ledger = folder / "ledger.txt"
        self.ledger.touch()
        self.coords: dict[str, Coordinator] = {}

    def start(self, name: str) -> Coordinator:
        coord = connect(self.shared or self.url, replica_id=name, allow=["tests."], lease=2.0)
        self.coords[name] = coord.start(concurrency=1)
        return coord

    def submit(self, n: int, pause: float, ledger: Path | None = None) -> str:
        inputs = {"ledger": str(ledger or self.ledger), "pause": pause}
        return Coordinator(self.backend).submit(STEPS, kwargs={"n": n}, inputs=inputs)

    def runs(self, flow_id: str) -> list[Run]:
        return read_runs(self.ledger, flow_id)

    def wait_runs(self, flow_id: str, count: int) -> None:
        until(lambda: len(self.runs(flow_id)) >= count, 20, f"{count} task starts")

    def wait_state(self, flow_id: str, state: str, timeout: float = 20.0) -> None:
        until(lambda: self.backend.load_flow(flow_id).state == state, timeout, f"flow {flow_id} to be {state}")

    def close(self) -> None:
        for coord in self.coords.values():
            coord.close()
        self.backend.close()


@pytest.fixture
def replicas(backend_url: str, tmp_path: Path) -> Iterator[Replicas]:
    made = Replicas(backend_url, tmp_path)
    try:
        yield made
    finally:
        made.close()


def at_epoch(tasks: dict[str, TaskDetail], epoch: int) -> dict[str, TaskDetail]:
    return {t: d for t, d in tasks.items() if d.epoch == epoch}


def test_release_fences_the_running_owner_and_the_flow_resumes_elsewhere(replicas: Replicas) -> None:
    r1 = replicas.start("r1")
    flow_id = replicas.submit(n=2, pause=1.2)
    replicas.wait_runs(flow_id, 1)  # r1 is inside s0 (its only slot is busy until s0 ends)
    old = until(lambda: replicas.backend.current_claim(flow_id), 10, "r1's claim")
    replicas.start("r2")

    result = ops.release(replicas.backend, flow_id)
    snapshot = replicas.backend.load_tasks(flow_id)  # from here on, no write under r1's claim may land
    assert result.fenced is not None and result.fenced.owner == "r1" and result.epoch > old.epoch

    replicas.wait_state(flow_id, SUCCESS)
    until(lambda: not r1.running(), 10, "r1 to let go of the flow")
    final = replicas.backend.load_tasks(flow_id)
    for task_id, detail in at_epoch(final, old.epoch).items():
        assert detail == snapshot[task_id]  # not one write under r1's claim landed after the release
    started = {r.task for r in replicas.runs(flow_id) if r.epoch == old.epoch}
    assert started <= set(at_epoch(snapshot, old.epoch))  # nothing started under the fenced claim after
    # s0 was in doubt when r1 was fenced: r2 found it RUNNING (had r1's result landed first, r2
    # would have reused it: attempt 1) and ran it again under a later claim (had r1's result
    # landed afterwards, its epoch would be r1's).
    s0 = final["s0"]
    assert (s0.owner, s0.attempts, s0.state) == ("r2", 2, SUCCESS) and s0.epoch > result.epoch
    assert {r.replica for r in replicas.runs(flow_id) if r.epoch > result.epoch} == {"r2"}


def test_cancel_of_a_running_flow_stops_new_task_starts(replicas: Replicas) -> None:
    r1 = replicas.start("r1")
    flow_id = replicas.submit(n=4, pause=0.4)
    replicas.wait_runs(flow_id, 2)
    epoch = until(lambda: replicas.backend.current_claim(flow_id), 10, "the claim").epoch

    result = ops.cancel(replicas.backend, flow_id)
    assert result.state == CANCELLED and result.fenced is not None and result.fenced.owner == "r1"
    until(lambda: not r1.running(), 10, "r1 to give the flow up")

    tasks = replicas.backend.load_tasks(flow_id)
    started = {r.task for r in replicas.runs(flow_id)}
    # each start recorded before the fence; the one running then is recorded as cancelled, in doubt
    assert started == set(at_epoch(tasks, epoch)) | set(result.stopped) and len(started) < 4
    assert result.stopped and all(tasks[t].state == FAILURE and tasks[t].epoch == result.epoch
                                  for t in result.stopped)
    flow = replicas.backend.load_flow(flow_id)
    assert flow.state == CANCELLED and flow.epoch == result.epoch  # r1 wrote nothing after the cancel
    assert flow_id not in replicas.backend.find_runnable(10) and replicas.backend.current_claim(flow_id) is None


def test_retry_of_a_reverted_flow_runs_it_again(replicas: Replicas, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    replicas.start("r1")
    later = tmp_path / "later"  # the ledger's folder is missing: s0 fails, the flow is reverted
    flow_id = replicas.submit(n=2, pause=0.0, ledger=later / "ledger.txt")
    replicas.wait_state(flow_id, REVERTED)
    later.mkdir()

    out = run_cli(capsys, replicas.backend, "retry", flow_id, "--yes")
    assert out.code == 0, out
    replicas.wait_state(flow_id, SUCCESS)
    tasks = replicas.backend.load_tasks(flow_id)
    assert (tasks["s0"].attempts, tasks["s1"].attempts) == (2, 1) and tasks["s0"].failure is None


def test_retry_reuse_lets_a_flow_held_for_a_version_change_finish(
    replicas: Replicas, capsys: pytest.CaptureFixture[str]
) -> None:
    flow_id = replicas.submit(n=2, pause=0.0)
    _stored_by_old_code(replicas.backend, flow_id)  # s0 done by version 0.3; today's s0 is 1.0
    replicas.start("r1")
    replicas.wait_state(flow_id, HELD)
    assert "changed major version 0.3 -> 1.0" in (replicas.backend.load_flow(flow_id).reason or "")

    assert run_cli(capsys, replicas.backend, "retry", flow_id, "--yes").code == 2  # a choice is needed
    out = run_cli(capsys, replicas.backend, "retry", flow_id, "--reuse", "--yes")
    assert out.code == 0, out
    replicas.wait_state(flow_id, SUCCESS)
    s0 = replicas.backend.load_tasks(flow_id)["s0"]
    assert (s0.result, s0.version, s0.meta.get("migrated_from")) == (41, "1.0", "0.3")
    assert [r.task for r in replicas.runs(flow_id)] == ["s1"]  # s0's stored result was reused


def _stored_by_old_code(backend: Backend, flow_id: str) -> None:
    token = backend.claim(flow_id, "old-replica", 30.0)
    now = time.time()
    meta: dict[str, Any] = {}
    backend.save_task(token, TaskDetail("s0", SUCCESS, 41, None, "0.3", 1, now, now, "old-replica",
                                        token.claim_id, token.epoch, meta))
    flow = backend.load_flow(flow_id)
    flow.state, flow.meta = RUNNING, {"tasks": ["s0", "s1"]}
    backend.save_flow(token, flow)
    backend.release(token)
