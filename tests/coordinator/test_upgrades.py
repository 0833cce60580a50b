"""Rolling upgrades and rollbacks with real replica processes on every shared
backend: a flow never runs on older code than it has already run on.

Two releases of one factory module (``tests/upgrade_code``: ``upflows`` 1.0
has steps a, b, c; 2.0 has a, b, x, c) run in replicas whose PYTHONPATH
holds one or the other, with builds "1.0" and "2.0". Step b can hold on a
file, so a test kills a 2.0 replica mid-flow at a known point. The ledger
every step appends to shows which replica (so which release) ran what:
a flow finished by 1.0 code after 2.0 code ran it would show no x.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowbaton.backends.states import PENDING, RUNNABLE_FLOW_STATES, SUCCESS
from flowbaton.engine.builds import UNSET_COST
from flowbaton.engine.meta import FlowMeta
from tests.servers import until
from tests.test_deploy import assert_parses, flowbaton_args

from .cluster import REPO, Cluster, Replica, env
from .ops_helpers import Out
from .test_cli import cli

pytestmark = pytest.mark.slow

CODE = Path(__file__).resolve().parents[1] / "upgrade_code"
V1, V2 = CODE / "v1", CODE / "v2"
RELEASES = {"1.0": V1, "2.0": V2}
ALLOW = "upflows"  # the module itself ("upflows." admits only modules under a package upflows)
TOO_OLD = "flow last ran on build 2.0; this replica runs 1.0"

# A service of one release submitting a flow, as its own process: the test
# process never imports either ``upflows``.
_SUBMIT = (
    "import sys\n"
    "from flowbaton.backends import open_backend\n"
    "from flowbaton.coordinator import Coordinator\n"
    "url, build, ledger, hold = sys.argv[1:5]\n"
    "backend = open_backend(url)\n"
    "try:\n"
    "    inputs = {'ledger': ledger, **({'hold': hold} if hold else {})}\n"
    "    print(Coordinator(backend, allow=['upflows'], build=build).submit('upflows:flow', inputs=inputs))\n"
    "finally:\n"
    "    backend.close()\n"
)


def submit(cluster: Cluster, build: str, hold: Path | None = None) -> str:
    """Submit ``upflows:flow`` from the code of release ``build``."""
    done = subprocess.run([sys.executable, "-c", _SUBMIT, cluster.url, build, str(cluster.ledger), str(hold or "")],
                          cwd=REPO, env=env(RELEASES[build]), capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-1]


def replica(cluster: Cluster, name: str, build: str) -> Replica:
    return cluster.spawn_release(name, RELEASES[build], build, allow=ALLOW)


def ran(cluster: Cluster, flow_id: str) -> list[tuple[str, str]]:
    """(task, replica) of every execution the ledger recorded, in order."""
    return [(r.task, r.replica) for r in cluster.runs(flow_id)]


def meta(cluster: Cluster, flow_id: str) -> FlowMeta:
    return FlowMeta(cluster.backend.load_flow(flow_id).meta)


def kill_mid_b(cluster: Cluster, flow_id: str, name: str) -> None:
    """Wait until replica ``name`` ran a and holds in b, then kill -9 it."""
    until(lambda: len(ran(cluster, flow_id)) >= 2, 30, f"a and b to start\n{cluster.logs()}")
    assert ran(cluster, flow_id) == [("a", name), ("b", name)]
    cluster.replicas[name].signal(signal.SIGKILL)
    cluster.replicas[name].proc.wait()


def declined(cluster: Cluster, flow_id: str, name: str) -> str:
    """The reason replica ``name`` recorded for declining the flow, once its
    claim is released too (the decline is written first)."""
    decline = until(lambda: [d for d in cluster.backend.load_declines(flow_id) if d.replica_id == name], 30,
                    f"{name} to decline flow {flow_id}\n{cluster.logs()}")[0]
    until(lambda: cluster.backend.current_claim(flow_id) is None, 15, f"{name} to release flow {flow_id}")
    return str(decline.reason)


def still_runnable(cluster: Cluster, flow_id: str) -> None:
    assert cluster.state(flow_id) in RUNNABLE_FLOW_STATES
    until(lambda: flow_id in cluster.backend.find_runnable(100), 10, f"flow {flow_id} to be runnable")


def stranded(cluster: Cluster) -> dict[str, str]:
    """``flowbaton flows --stranded``: flow id -> why no live replica runs it."""
    listed = cli(cluster.url, "flows", "--stranded", "--json")
    rows = listed.json()
    assert listed.code == (1 if rows else 0), listed.stderr  # exit 1: there are stranded flows
    return {row["id"]: row["stranded"] for row in rows}


def flowbaton(cluster: Cluster, build: str, *argv: str) -> Out:
    """``flowbaton ARGV`` as an operator runs it where release ``build`` is installed."""
    done = subprocess.run([sys.executable, "-m", "flowbaton", "--backend", cluster.url, *argv], cwd=REPO,
                          env=env(RELEASES[build]), capture_output=True, text=True, timeout=60, check=False)
    return Out(done.returncode, done.stdout, done.stderr)


def plan(cluster: Cluster, flow_id: str, build: str) -> dict[str, Any]:
    """``flowbaton plan`` with release ``build``'s code: what it would do."""
    planned = flowbaton(cluster, build, "plan", flow_id, "--allow", ALLOW, "--build", build, "--json")
    assert planned.code == 0, planned.stderr
    return planned.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("submitted_on", ["1.0", "2.0"])
def test_an_old_replica_declines_a_flow_new_code_ran_and_a_new_one_finishes_it(
        cluster: Cluster, submitted_on: str) -> None:
    hold = cluster.folder / "hold-b"
    hold.touch()
    replica(cluster, "new1", "2.0")
    flow_id = submit(cluster, submitted_on, hold)
    kill_mid_b(cluster, flow_id, "new1")
    assert meta(cluster, flow_id).build == "2.0"  # the submit's, or the new replica's claim's

    replica(cluster, "old1", "1.0")
    assert TOO_OLD in declined(cluster, flow_id, "old1")
    still_runnable(cluster, flow_id)
    assert ran(cluster, flow_id) == [("a", "new1"), ("b", "new1")]  # old code started nothing
    # what an operator sees, once the dead new replica's presence is gone too
    until(lambda: "new1" not in {r.replica_id for r in cluster.backend.list_replicas()}, 20, "new1's presence to end")
    assert "build 2.0" in stranded(cluster)[flow_id]

    hold.unlink()
    replica(cluster, "new2", "2.0")
    cluster.wait_done(flow_id)
    assert cluster.state(flow_id) == SUCCESS
    assert ran(cluster, flow_id) == [("a", "new1"), ("b", "new1"), ("b", "new2"), ("x", "new2"), ("c", "new2")]
    assert meta(cluster, flow_id).build == "2.0"


def test_an_old_replica_never_starts_a_flow_new_code_submitted(cluster: Cluster) -> None:
    replica(cluster, "old1", "1.0")
    cluster.wait_registered("old1")
    assert {r.replica_id: r.build for r in cluster.backend.list_replicas()} == {"old1": "1.0"}
    flow_id = submit(cluster, "2.0")
    assert TOO_OLD in declined(cluster, flow_id, "old1")
    assert cluster.state(flow_id) == PENDING
    assert cluster.backend.load_tasks(flow_id) == {} and ran(cluster, flow_id) == []

    replica(cluster, "new1", "2.0")
    cluster.wait_done(flow_id)
    assert cluster.state(flow_id) == SUCCESS
    assert ran(cluster, flow_id) == [("a", "new1"), ("b", "new1"), ("x", "new1"), ("c", "new1")]


def test_a_rollback_on_purpose_finishes_the_flow_on_old_code(cluster: Cluster) -> None:
    hold = cluster.folder / "hold-b"
    hold.touch()
    replica(cluster, "new1", "2.0")
    flow_id = submit(cluster, "2.0", hold)
    kill_mid_b(cluster, flow_id, "new1")
    replica(cluster, "old1", "1.0")
    assert TOO_OLD in declined(cluster, flow_id, "old1")  # by default: stranded until 2.0 is back

    # The operator looks at what 1.0 code would do, then lets it.
    before = plan(cluster, flow_id, "1.0")
    assert (before["build"], before["this_build"], before["declines"]) == ("2.0", "1.0", True)
    assert before["reuse"] == ["a"] and before["in_doubt"] == ["b"] and "c" in before["run"]
    assert "x" not in before["run"]  # 1.0 does not know it
    allowed = flowbaton(cluster, "1.0", "retry", flow_id, "--allow-build", "1.0", "--yes")
    assert allowed.code == 0, allowed.stderr
    assert plan(cluster, flow_id, "1.0")["declines"] is False

    hold.unlink()
    replica(cluster, "old2", "1.0")  # old1 leaves a flow it declined alone for a minute
    cluster.wait_done(flow_id)
    assert cluster.state(flow_id) == SUCCESS
    runs = ran(cluster, flow_id)
    assert runs[:2] == [("a", "new1"), ("b", "new1")]
    assert [task for task, _ in runs[2:]] == ["b", "c"]  # finished on 1.0 code: no x
    assert {who for _, who in runs[2:]} <= {"old1", "old2"}
    assert (meta(cluster, flow_id).build, meta(cluster, flow_id).allowed_build) == ("2.0", "1.0")


def test_a_replica_without_a_build_runs_what_it_can_build(cluster: Cluster) -> None:
    unset = cluster.spawn_release("unset", V1, None, allow=ALLOW)
    flow_id = submit(cluster, "2.0")
    cluster.wait_done(flow_id)
    assert cluster.state(flow_id) == SUCCESS
    assert ran(cluster, flow_id) == [("a", "unset"), ("b", "unset"), ("c", "unset")]  # as before builds
    assert meta(cluster, flow_id).build == "2.0"
    assert cluster.backend.load_declines(flow_id) == []
    until(lambda: UNSET_COST in unset.log_text(), 10, "the replica to say what an unset build costs")


def test_every_command_in_the_upgrade_guide_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (REPO / "docs" / "upgrades.md").read_text()
    lines = [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()]
    commands = [args for line in lines if (args := flowbaton_args(shlex.split(line, comments=True)))]
    assert {args[0] for args in commands} >= {"replica", "submit", "replicas", "flows", "show", "plan", "retry"}
    for args in commands:
        assert_parses(args, {}, monkeypatch, "docs/upgrades.md")
