"""docs/security.md, "Code that does not return": nothing unbounded stalls a flow or a replica.

A task call past its ``timeout`` fails (``TaskTimeout``) and follows its
retry policy, but its thread cannot be stopped: until it returns, the task
is not called again, the flow is not handed on, and ``/healthz`` names the
flow and task so a supervisor restarts the process. SIGTERM ends a replica
within ``--stop-timeout`` even with a hung task; the flow's claim then
expires and another replica resumes it with the task in doubt.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from flowbaton.backends.errors import DefinitionError
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.states import HELD, REVERTED, SUCCESS
from flowbaton.coordinator import Coordinator
from flowbaton.engine import FlowReport, new_flow_detail, run_flow, task
from tests.coordinator.cluster import REPO, Cluster, env
from tests.engine.helpers import claim_of
from tests.servers import until

from . import hostile_flows
from .hostile_flows import CALLS

pytestmark = pytest.mark.security

HOSTILE = "tests.security.hostile_flows"


def run_once(store: MemoryBackend, factory: str, inputs: dict[str, float] | None = None,
             task_timeout: float | None = None) -> tuple[str, FlowReport]:
    detail = new_flow_detail(f"{HOSTILE}:{factory}", inputs=inputs)
    store.create_flow(detail)
    token = store.claim(detail.id, "me", 30.0)
    return detail.id, run_flow(store, claim_of(token), replica_id="me", allow=["tests."], task_timeout=task_timeout)


def test_timeouts_are_checked_at_definition() -> None:
    for bad in (0, -1, float("nan"), "5", True):
        with pytest.raises(DefinitionError, match="timeout"):
            task(id="t", timeout=bad)(lambda: None)  # type: ignore[arg-type]
    assert task(id="t", timeout=2)(lambda: None).task_timeout == 2.0
    assert hostile_flows.sleeps_unbounded.clone(id="other").task_timeout == math.inf


def test_a_task_past_its_timeout_fails_then_retries_once_its_call_returned(gate: None) -> None:
    store = MemoryBackend()
    flow_id, report = run_once(store, "retried_after_timeout")
    assert report.state == SUCCESS
    detail = store.load_tasks(flow_id)["slow-once"]
    assert detail.attempts == 2 and detail.result == 2
    assert detail.meta["last_failure"]["type"] == "flowbaton.engine.timeouts.TaskTimeout"
    [(_, one, began1, ended1), (_, two, began2, _)] = sorted(CALLS, key=lambda c: c[1])
    assert (one, two) == (1, 2)
    assert began2 >= ended1  # the retry waited for the abandoned call: never two at once
    assert ended1 - began1 >= 0.9  # attempt 1 really ran past its 0.3 s


def test_a_timed_out_task_without_retries_fails_and_is_reverted_after_its_call_returned(gate: None) -> None:
    store = MemoryBackend()
    flow_id, report = run_once(store, "reverted_after_timeout")
    assert report.state == REVERTED
    detail = store.load_tasks(flow_id)["slow-no-retry"]
    assert detail.state == REVERTED and detail.failure is not None  # failed, then undone with the rest
    assert "did not return within its timeout of 0.3s" in detail.failure["message"]
    ended = next(c[3] for c in CALLS if c[0] == "slow-no-retry")
    undone = next(c[2] for c in CALLS if c[0] == "unmake")
    assert undone >= ended  # nothing reverted while the abandoned call ran


def test_the_replica_default_bounds_tasks_without_their_own_timeout() -> None:
    store = MemoryBackend()
    # 2 s of sleep against a 0.2 s bound: a loaded CI machine may wake the
    # waiting thread late, but not 1.8 s late (the run lasts the 2 s anyway)
    _, report = run_once(store, "default_bound", inputs={"seconds": 2.0}, task_timeout=0.2)
    assert report.state == REVERTED and "TaskTimeout" in (report.reason or "")
    _, report = run_once(store, "opted_out", inputs={"seconds": 0.6}, task_timeout=0.2)
    assert report.state == SUCCESS


def test_timeouts_beyond_what_threads_can_wait_mean_no_bound() -> None:
    """A wait past ``threading.TIMEOUT_MAX`` raises OverflowError: such a
    task or build timeout is no bound, not a crash of the run."""
    store = MemoryBackend()
    detail = new_flow_detail(f"{HOSTILE}:default_bound", inputs={"seconds": 0.0})
    store.create_flow(detail)
    token = store.claim(detail.id, "me", 30.0)
    report = run_flow(store, claim_of(token), replica_id="me", allow=["tests."], task_timeout=1e13, build_timeout=1e300)
    assert report.state == SUCCESS
    assert task(id="t", timeout=1e300)(lambda: None).task_timeout == 1e300  # accepted, as before


def probe(port: int, path: str = "/healthz") -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_a_stuck_task_turns_healthz_unhealthy_naming_it_and_keeps_the_claim(gate: None) -> None:
    store = MemoryBackend()
    with Coordinator(store, allow=["tests."], lease=1.0, replica_id="r-stuck") as coord:
        port = coord.serve_http(0, "127.0.0.1", metrics=False).port
        coord.start(concurrency=2)
        assert probe(port)[0] == 200
        flow_id = coord.submit(f"{HOSTILE}:hang_until_released")
        _, body = until(lambda: (s := probe(port))[0] == 503 and s, 10, "healthz to turn unhealthy")
        assert flow_id in str(body["reason"]) and "'hangs'" in str(body["reason"])
        assert body["stuck"] == [{"flow_id": flow_id, "task_id": "hangs", "timeout": 0.3,
                                  "stuck_for": body["stuck"][0]["stuck_for"]}]  # type: ignore[index]
        held_for = time.monotonic() + 2 * coord.lease
        until(lambda: time.monotonic() > held_for, 10, "two leases to pass")
        claim = store.current_claim(flow_id)
        assert claim is not None and claim.owner == "r-stuck"  # kept (renewed), not handed on
        first_epoch = store.load_tasks(flow_id)["hangs"].epoch
        hostile_flows.GATE.set()  # the stuck call returns after all
        assert coord.wait(flow_id, timeout=10).state == SUCCESS
        until(lambda: probe(port)[0] == 200, 10, "healthz to recover")
        detail = store.load_tasks(flow_id)["hangs"]
        assert detail.attempts == 2 and detail.epoch == first_epoch  # retried under the same claim


def test_stop_gives_up_on_a_hung_task_within_its_timeout(gate: None) -> None:
    store = MemoryBackend()
    coord = Coordinator(store, allow=["tests."], lease=5.0, stop_timeout=0.5)
    coord.start()
    flow_id = coord.submit(f"{HOSTILE}:hang_once", inputs={"ledger": "/dev/null"})
    until(lambda: store.load_tasks(flow_id).get("hangs-once"), 10, "the task to start")
    began = time.monotonic()
    assert coord.stop() is False  # gave up on the flow
    assert time.monotonic() - began < 0.5 + 3.0
    assert store.load_flow(flow_id).owner == coord.replica_id  # not handed back
    coord.close()
    assert store.current_claim(flow_id) is not None  # not released: it expires with the lease


@pytest.mark.slow
def test_sigterm_with_a_hung_task_exits_within_the_stop_timeout_and_another_replica_resumes(
    cluster: Cluster, tmp_path: Path
) -> None:
    stop_timeout, lease = 1.0, 2.0
    cmd = [sys.executable, "-m", "flowbaton", "--backend", cluster.url, "replica", "--allow", "tests.",
           "--lease", str(lease), "--replica-id", "r1", "--stop-timeout", str(stop_timeout)]
    log = tmp_path / "r1.log"
    with log.open("wb") as out:
        r1 = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        cluster.wait_registered("r1")
        flow_id = cluster.submit(factory=f"{HOSTILE}:hang_once")
        cluster.wait_runs(flow_id, 1)  # attempt 1 started, and hangs
        began = time.monotonic()
        r1.send_signal(signal.SIGTERM)
        assert r1.wait(timeout=stop_timeout + 15) == 1, log.read_text()
        took = time.monotonic() - began
        assert took < stop_timeout + 6.0, f"stop took {took:.1f}s\n{log.read_text()}"
    finally:
        if r1.poll() is None:
            r1.kill()
            r1.wait()
    text = log.read_text()
    assert "stop timeout reached with flows still running" in text and flow_id in text
    flow = cluster.backend.load_flow(flow_id)
    assert flow.owner == "r1" and flow.state not in (SUCCESS, HELD)  # not handed back

    cluster.spawn("r2", lease=lease)
    cluster.wait_done(flow_id)
    assert cluster.state(flow_id) == SUCCESS
    first, second = cluster.runs(flow_id)
    assert (first.replica, first.attempt) == ("r1", 1)
    assert (second.replica, second.attempt) == ("r2", 2) and second.epoch > first.epoch  # in doubt, re-run
    assert cluster.backend.load_tasks(flow_id)["hangs-once"].result == 2


def test_a_stop_timeout_beyond_what_threads_can_wait_means_no_bound(gate: None) -> None:
    """``Thread.join`` refuses a timeout over ``threading.TIMEOUT_MAX``
    (OverflowError): a stop timeout of 1e300 s waits for the flow instead."""
    store = MemoryBackend()
    coord = Coordinator(store, allow=["tests."], lease=5.0, stop_timeout=1e300)
    coord.start()
    flow_id = coord.submit(f"{HOSTILE}:hang_once", inputs={"ledger": "/dev/null"})
    until(lambda: store.load_tasks(flow_id).get("hangs-once"), 10, "the task to start")
    release = threading.Timer(0.3, hostile_flows.GATE.set)
    release.start()
    try:
        assert coord.stop() is True  # waited for the flow, which then handed back
    finally:
        release.cancel()
        coord.close()
    assert store.current_claim(flow_id) is None
