"""Builds in the operator commands: ``replicas`` and ``check`` say which live
replicas run which build (and what an unset one costs), ``flows --stranded``
and ``show`` name flows only newer code may run, ``retry --allow-build``
lets older code take them on purpose, ``plan`` says whether this code would
decline a flow. Presence records stand in for replicas, as in test_ops_cli."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowbaton.backends.base import Backend
from flowbaton.backends.errors import ClaimLost
from flowbaton.backends.records import FlowDetail, ReplicaInfo
from flowbaton.backends.states import CANCELLED, FAILURE, HELD, PENDING, RUNNING, SUCCESS
from flowbaton.engine.builds import UNSET_COST
from flowbaton.engine.meta import FlowMeta
from flowbaton.ops.stranded import stranded_reason
from tests.servers import until

from .inprocess import LocalReplicas, submit_steps
from .ops_helpers import bad_input, present, run_cli, store, task

FAILED = {"type": "builtins.RuntimeError", "message": "boom", "traceback": "..."}

# ----------------------------------------------------------------- replicas


def test_replicas_show_each_build_and_what_an_unset_one_costs(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    present(backend, "new", ["tests."], build="2.1")
    present(backend, "old", ["tests."], build="2.0rc1")
    doc = run_cli(capsys, backend, "replicas", "--json").json()
    assert {r["replica_id"]: r["build"] for r in doc["replicas"]} == {"new": "2.1", "old": "2.0rc1"}
    assert list(doc["replicas"][0])[-2:] == ["build", "draining"] and doc["unset_builds"] == []
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


# ----------------------------------------------------------------- stranded


def _flow(build: str | None = None, allowed: str | None = None, state: str = PENDING) -> FlowDetail:
    meta = {"build": build, "allowed_build": allowed}
    return FlowDetail(id="f", name="n", factory="svc.flows:make", state=state,
                      meta={k: v for k, v in meta.items() if v is not None})


def _replica(replica_id: str, build: str | None, allow: tuple[str, ...] = ("svc.",)) -> ReplicaInfo:
    return ReplicaInfo(replica_id, "h", 1, 0.0, "0.1.0", list(allow), build=build)


def test_a_flow_newer_than_every_live_replica_is_stranded() -> None:
    old, older = _replica("a", "2.0"), _replica("b", "1.9")
    assert stranded_reason(_flow("2.1"), False, [], [old, older]) == (
        "no live replica runs build 2.1 or newer (live: 1.9, 2.0); start one, or let older code take it on "
        "purpose: flowbaton retry f --allow-build VERSION")
    assert stranded_reason(_flow("2.1"), False, [], [old, _replica("c", "2.10")]) is None  # 2.10 > 2.1
    assert stranded_reason(_flow("2.1"), False, [], [old, _replica("c", None)]) is None  # unset runs anything
    assert stranded_reason(_flow(), False, [], [old]) is None  # a flow from before builds
    assert stranded_reason(_flow("2.1"), True, [], [old]) is None  # claimed: someone runs it
    assert stranded_reason(_flow("2.1", state=SUCCESS), False, [], [old]) is None
    # only replicas that may import it count
    assert "runs build 2.1" in (stranded_reason(_flow("2.1"), False, [], [old, _replica("x", "3.0", ("x.",))])
                                 or "")


def test_an_allowed_build_lowers_the_bar() -> None:
    old = _replica("a", "2.0")
    assert stranded_reason(_flow("2.1", "2.0"), False, [], [old]) is None
    assert stranded_reason(_flow("2.1", "2.0"), False, [], [_replica("b", "1.9")]) == (
        "no live replica runs build 2.0 or newer (live: 1.9; the flow ran on 2.1, an operator allowed 2.0)")


def test_a_stored_build_that_is_no_version_is_named_not_raised() -> None:
    reason = stranded_reason(_flow("<x>"), False, [], [_replica("a", "2.0")]) or ""
    assert "meta.build '<x>' is not a PEP 440 version" in reason
    assert stranded_reason(_flow("2.1"), False, [], [_replica("a", "two")]) is None  # counts as unset


def test_flows_stranded_and_show_name_the_build(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    present(backend, "old", ["tests."], build="2.0")
    newer = store(backend, PENDING, meta={"build": "2.1"})
    fits = store(backend, PENDING, meta={"build": "2.0"})
    [row] = run_cli(capsys, backend, "flows", "--stranded", "--json").json()
    assert row["id"] == newer and row["stranded"].startswith("no live replica runs build 2.1 or newer (live: 2.0)")
    assert fits not in run_cli(capsys, backend, "flows", "--stranded").stdout
    doc = run_cli(capsys, backend, "show", newer, "--json").json()
    assert doc["stranded"] is True and "runs build 2.1 or newer" in doc["stranded_reason"]
    text = run_cli(capsys, backend, "show", newer).stdout
    assert "STRANDED  no live replica runs build 2.1 or newer" in text and "build     2.1" in text
    present(backend, "new", ["tests."], build="2.1")
    assert run_cli(capsys, backend, "flows", "--stranded", "--json").json() == []


# ------------------------------------------------------------ --allow-build


def test_allow_build_on_a_runnable_flow_only_sets_the_allowance(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    present(backend, "old", ["tests."], build="2.0")
    flow = store(backend, RUNNING, tasks=[task("s0", FAILURE, failure=FAILED)],
                 meta={"build": "2.1", "takeovers": 2, "progress_mark": 0})
    token = backend.claim(flow, "new", 60.0)
    out = run_cli(capsys, backend, "retry", flow, "--allow-build", "2.0", "--yes")
    assert out.code == 0 and "build 2.0 or newer may run it now" in out.stdout and "fenced new's claim" in out.stdout
    with pytest.raises(ClaimLost):
        backend.save_task(token, task("s1", RUNNING))
    record, meta = backend.load_flow(flow), FlowMeta(backend.load_flow(flow).meta)
    assert (record.state, record.owner, meta.build, meta.allowed_build) == (RUNNING, None, "2.1", "2.0")
    assert meta.takeovers == 2  # no other retry effect: the poison counter and the tasks are as they were
    assert backend.load_tasks(flow)["s0"].state == FAILURE
    [note] = meta.operations
    assert (note["action"], note["allowed_build"], note["tasks"]) == ("retry", "2.0", [])
    assert run_cli(capsys, backend, "flows", "--stranded", "--json").json() == []


def test_allow_build_on_a_stopped_flow_retries_it_too(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    failed = store(backend, FAILURE, tasks=[task("s0", FAILURE, failure=FAILED)], meta={"build": "2.1"})
    out = run_cli(capsys, backend, "retry", failed, "--allow-build", "1.9", "--yes")
    assert out.code == 0 and "tasks back to PENDING: s0" in out.stdout and "build 1.9 or newer" in out.stdout
    record = backend.load_flow(failed)
    assert (record.state, FlowMeta(record.meta).allowed_build) == (RUNNING, "1.9")
    assert backend.load_tasks(failed)["s0"].state == PENDING
    held = store(backend, HELD, meta={"build": "2.1", "takeovers": 4})
    assert run_cli(capsys, backend, "retry", held, "--allow-build", "2.1", "--yes").code == 0
    assert FlowMeta(backend.load_flow(held).meta).allowed_build == "2.1"


@pytest.mark.parametrize(("state", "build", "argv", "says"), [
    (PENDING, "2.1", ("--allow-build", "2.2"), "is newer than build 2.1"),
    (PENDING, "2.1", ("--allow-build", "2.1.post1"), "is newer than build 2.1"),
    (PENDING, None, ("--allow-build", "2.0"), "records no build"),
    (SUCCESS, "2.1", ("--allow-build", "2.0"), "it is SUCCESS"),
    (CANCELLED, "2.1", ("--allow-build", "2.0"), "it is CANCELLED"),
    (PENDING, "2.1", ("--allow-build", "2.0", "--task", "s0", "--rerun"), "only --allow-build applies"),
    (PENDING, "<x>", ("--allow-build", "2.0"), "is not a PEP 440 version"),
    (PENDING, "2.1", ("--allow-build", "two"), "argument --allow-build: 'two' is not a PEP 440 version"),
    (PENDING, "2.1", ("--allow-build", ""), "argument --allow-build"),
])
def test_a_refused_allowance_changes_nothing(
    backend: Backend, capsys: pytest.CaptureFixture[str], state: str, build: str | None, argv: tuple[str, ...],
    says: str,
) -> None:
    flow = store(backend, state, meta={} if build is None else {"build": build})
    before = backend.load_flow(flow).to_json()
    out = run_cli(capsys, backend, "retry", flow, *argv, "--yes")
    assert bad_input(out) and says in out.stderr, out
    assert backend.load_flow(flow).to_json() == before and backend.current_claim(flow) is None


def test_retry_stranded_allows_every_flow_stranded_for_its_build(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    present(backend, "old", ["tests."], build="2.0")
    newer = [store(backend, PENDING, meta={"build": "2.1"}), store(backend, RUNNING, meta={"build": "2.2"})]
    fits = store(backend, PENDING, meta={"build": "1.0"})
    busy = store(backend, PENDING, meta={"build": "2.1"})
    backend.claim(busy, "new", 60.0)  # someone runs it: not stranded, not fenced
    runs_here = store(backend, PENDING, meta={"build": "1.5"})  # 2.0 may run it: not stranded
    present(backend, "older", ["tests."], build="1.0")
    out = run_cli(capsys, backend, "retry", "--stranded", "--allow-build", "2.0", "--yes")
    assert out.code == 0, out
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and all("build 2.0 or newer may run it now" in line for line in lines[:2])
    assert {line.split()[1] for line in lines[:2]} == set(newer)
    assert lines[-1] == "build 2.0 or newer may now run 2 flow(s) stranded for their build"
    for flow in newer:
        assert FlowMeta(backend.load_flow(flow).meta).allowed_build == "2.0"
    for flow in (fits, busy, runs_here):
        assert FlowMeta(backend.load_flow(flow).meta).allowed_build is None
    claim = backend.current_claim(busy)
    assert claim is not None and claim.owner == "new"
    assert run_cli(capsys, backend, "flows", "--stranded", "--json").json() == []
    again = run_cli(capsys, backend, "retry", "--stranded", "--allow-build", "2.0", "--yes")
    assert again.code == 0 and again.stdout.strip() == "build 2.0 or newer may now run 0 flow(s) stranded for " \
        "their build"


def test_retry_stranded_skips_a_flow_it_may_not_allow(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    present(backend, "old", ["tests."], build="1.0")
    flow = store(backend, PENDING, meta={"build": "1.5"})
    out = run_cli(capsys, backend, "retry", "--stranded", "--allow-build", "2.0", "--yes")
    assert out.code == 0 and f"skipped {flow}: --allow-build 2.0 is newer than build 1.5" in out.stdout
    assert FlowMeta(backend.load_flow(flow).meta).allowed_build is None


@pytest.mark.parametrize("argv", [
    ("retry", "--stranded"),
    ("retry", "--stranded", "--allow-build", "2.0", "--task", "s0"),
    ("retry", "--allow-build", "2.0"),
    ("retry", "--stranded", "--allow-build", "latest"),
])
def test_retry_stranded_usage(backend: Backend, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    present(backend, "old", ["tests."], build="2.0")
    flow = store(backend, PENDING, meta={"build": "2.1"})
    assert bad_input(run_cli(capsys, backend, *argv, "--yes"))
    assert FlowMeta(backend.load_flow(flow).meta).allowed_build is None


# --------------------------------------------------------------------- plan


def test_plan_says_whether_this_code_would_decline_the_flow(
    backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWBATON_BUILD", raising=False)
    flow = store(backend, RUNNING, tasks=[task("s0", SUCCESS, result=5)], meta={"build": "2.1"})
    old = run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--build", "2.0", "--json").json()
    assert (old["reuse"], old["run"]) == (["s0"], ["s1"])  # the plan itself stays
    assert (old["build"], old["allowed_build"], old["this_build"], old["declines"]) == ("2.1", None, "2.0", True)
    text = run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--build", "2.0").stdout.splitlines()
    assert "  reuse     s0" in text
    assert text[-2:] == ["  build     the flow ran on 2.1; this code is 2.0",
                         "  would decline: flow last ran on build 2.1; this code is build 2.0; "
                         "retry --allow-build 2.0 lets it run"]
    new = run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--build", "2.1.1", "--json").json()
    assert (new["this_build"], new["declines"]) == ("2.1.1", False)
    assert "would decline" not in run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--build", "3").stdout
    unset = run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--json").json()  # tests. is no distribution
    assert (unset["this_build"], unset["declines"]) == (None, False)
    monkeypatch.setenv("FLOWBATON_BUILD", "1.0")
    assert run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--json").json()["declines"] is True

    assert run_cli(capsys, backend, "retry", flow, "--allow-build", "2.0", "--yes").code == 0
    allowed = run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--build", "2.0")
    assert "an operator allowed build 2.0 or newer; this code is 2.0" in allowed.stdout
    assert "would decline" not in allowed.stdout


def test_plan_of_a_flow_without_builds_is_as_before(backend: Backend, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWBATON_BUILD", raising=False)
    flow = store(backend, RUNNING)
    text = run_cli(capsys, backend, "plan", flow, "--allow", "tests.").stdout
    assert "build" not in text and "run       s0, s1" in text
    doc = run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--json").json()
    assert list(doc)[-4:] == ["build", "allowed_build", "this_build", "declines"] and doc["declines"] is False
    assert bad_input(run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--build", "2.x"))


def test_plan_names_a_stored_build_that_is_no_version(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    flow = store(backend, RUNNING, meta={"build": "\x1b[2Jnope"})
    out = run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--build", "2.0")
    assert out.code == 0 and "would decline:" in out.stdout and "is not a PEP 440 version" in out.stdout
    assert "\x1b" not in out.stdout


# --------------------------------------------------------------- end to end


def test_a_rollback_strands_a_flow_until_an_operator_allows_the_old_build(
    backend: Backend, local_replicas: LocalReplicas, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Submitted by build 2.1, then only 2.0 replicas live (a rollback): they
    decline it and it shows as stranded; after ``retry --allow-build 2.0`` a
    2.0 replica runs it to the end."""
    flow = submit_steps(local_replicas.add(backend, build="2.1", replica_id="new"), tmp_path / "ledger", n=2)
    local_replicas.add(backend, build="2.0", replica_id="old-1").start(1)
    until(lambda: backend.load_declines(flow), 20, "old-1's decline")
    [decline] = backend.load_declines(flow)
    assert "flow last ran on build 2.1; this replica runs 2.0" in decline.reason
    [row] = run_cli(capsys, backend, "flows", "--stranded", "--json").json()
    assert row["stranded"].startswith("no live replica runs build 2.1 or newer (live: 2.0)")
    assert backend.load_flow(flow).state == PENDING and backend.load_tasks(flow) == {}  # nothing ran on 2.0

    assert run_cli(capsys, backend, "retry", "--stranded", "--allow-build", "2.0", "--yes").code == 0
    local_replicas.add(backend, build="2.0", replica_id="old-2").start(1)  # old-1 leaves it alone a while
    until(lambda: backend.load_flow(flow).state == SUCCESS, 30, "the flow to finish on build 2.0")
    meta = FlowMeta(backend.load_flow(flow).meta)
    assert (meta.build, meta.allowed_build) == ("2.1", "2.0")  # the newest build stays the flow's
    assert {t.owner for t in backend.load_tasks(flow).values()} == {"old-2"}
