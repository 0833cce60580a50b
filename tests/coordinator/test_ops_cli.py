"""Every operator command on every backend: parsed JSON, readable tables,
exit codes, and what each action leaves in the store.

Flows are stored directly in the states under test and replicas are
presence records, so each command is checked against a known store without
waiting on real runs (those are in test_ops_fencing.py).
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from flowbaton.backends.base import Backend
from flowbaton.backends.errors import ClaimLost, FlowNotFound
from flowbaton.backends.records import Decline
from flowbaton.backends.states import (
    CANCELLED,
    FAILURE,
    HELD,
    PENDING,
    REVERT_FAILURE,
    REVERTED,
    RUNNING,
    SUCCESS,
)
from flowbaton.cli.common import CLI_PATIENCE

from .ops_helpers import bad_input, present, run_cli, store, task

DAY = 86400.0
FAILED = {"type": "builtins.RuntimeError", "message": "boom", "traceback": "..."}
CLAIM_KEYS = {"flow_id", "owner", "token", "epoch", "claimed_at", "expires_at",
              "host", "pid", "state", "age", "lease", "lease_left", "last_progress", "stale"}


def ids(rows: list[dict[str, object]]) -> list[object]:
    return [row.get("id") or row.get("flow_id") for row in rows]


# ----------------------------------------------------------------- listings


def test_listings(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    present(backend, "r1", ["tests."])
    present(backend, "r2", ["other."], host="hostB", pid=99)
    old = store(backend, SUCCESS, updated_at=now - 3 * DAY)
    free = store(backend, PENDING)
    refused = store(backend, PENDING)
    backend.record_decline(refused, Decline("r1", "FactoryError: no module named tests", time.time()))
    busy = store(backend, RUNNING, tasks=[task("s0", SUCCESS, result=1, at=now - 4)])
    backend.claim(busy, "r1", 60.0)
    backend.claim(free, "ghost", 60.0)  # held by no live replica

    flows = run_cli(capsys, backend, "flows", "--json").json()
    assert ids(flows) == [old, free, refused, busy]
    assert {f["id"]: f["owner"] for f in flows} == {old: None, free: "ghost", refused: None, busy: "r1"}
    assert ids(run_cli(capsys, backend, "flows", "--state", "pending", "--json").json()) == [free, refused]
    assert ids(run_cli(capsys, backend, "flows", "--owner", "r1", "--json").json()) == [busy]
    assert ids(run_cli(capsys, backend, "flows", "--since", "1d", "--json").json()) == [free, refused, busy]
    iso = datetime.fromtimestamp(now - 3600).isoformat(timespec="seconds")
    assert ids(run_cli(capsys, backend, "flows", "--since", iso, "--json").json()) == [free, refused, busy]
    [stuck] = run_cli(capsys, backend, "flows", "--stranded", "--json").json()
    assert stuck["id"] == refused and "declined by every live replica" in stuck["stranded"]
    assert "r1: FactoryError" in stuck["stranded"]
    table = run_cli(capsys, backend, "flows", "--stranded")
    assert table.code == 1 and refused in table.stdout and "declined by every" in table.stdout  # alert on it
    assert run_cli(capsys, backend, "flows", "--json").code == 0  # a plain listing found no problem

    claims = run_cli(capsys, backend, "claims", "--json").json()
    assert {c["flow_id"] for c in claims} == {busy, free} and all(set(c) == CLAIM_KEYS for c in claims)
    [mine] = run_cli(capsys, backend, "claims", "--owner", "r1", "--json").json()
    assert (mine["flow_id"], mine["host"], mine["pid"], mine["state"], mine["stale"]) == (
        busy, "hostA", 4242, RUNNING, False)
    assert mine["last_progress"] == pytest.approx(now - 4) and mine["age"] >= 0
    session = "session" in backend.capabilities
    assert (mine["lease"], mine["lease_left"] is None) == (("session", True) if session else ("lease", False))
    [ghost] = run_cli(capsys, backend, "claims", "--stale", "--json").json()
    assert (ghost["flow_id"], ghost["owner"], ghost["host"], ghost["stale"]) == (free, "ghost", None, True)
    text = run_cli(capsys, backend, "claims").stdout
    assert "hostA" in text and "ghost (stale)" in text and "LAST PROGRESS" in text

    doc = run_cli(capsys, backend, "replicas", "--json").json()
    assert {r["replica_id"]: r["claims"] for r in doc["replicas"]} == {"r1": [busy], "r2": []}
    assert [c["flow_id"] for c in doc["other_claims"]] == [free] and doc["warnings"] == []
    assert "hostB" in run_cli(capsys, backend, "replicas").stdout


def test_show_and_plan(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    present(backend, "r1", ["tests."])
    resumes = [{"at": time.time(), "epoch": 3, "owner": "r1", "previous_owner": "r0", "takeover": True,
                "added": [], "unmatched": ["gone"], "version_changed": []}]
    claims = [{"epoch": 2, "owner": "r0", "claimed_at": time.time() - 9, "ended_at": None, "ended": "expired"},
              {"epoch": 3, "owner": "r1", "claimed_at": time.time() - 5, "ended_at": None, "ended": None}]
    flow = store(backend, RUNNING, tasks=[task("s0", SUCCESS, result=5), task("gone", SUCCESS)],
                 meta={"resumes": resumes, "unmatched": ["gone"], "claims": claims})
    backend.record_decline(flow, Decline("r1", "FactoryError: no", time.time()))

    doc = run_cli(capsys, backend, "show", flow, "--json").json()
    assert [t["id"] for t in doc["tasks"]] == ["s0", "s1", "gone"] and doc["unmatched"] == ["gone"]
    assert doc["resumes"] == resumes and doc["stranded"] is True and doc["claim"] is None
    assert [d["replica_id"] for d in doc["declines"]] == ["r1"]
    text = run_cli(capsys, backend, "show", flow).stdout
    assert "STRANDED" in text and "took over from r0" in text and "unmatched gone" in text
    assert "epoch 2  r0 claimed it: expired" in text and "epoch 3  r1 claimed it: end not recorded" in text
    assert doc["claims"] == claims

    plan = run_cli(capsys, backend, "plan", flow, "--allow", "tests.", "--json").json()
    assert (plan["reuse"], plan["run"], plan["unmatched"], plan["held"]) == (["s0"], ["s1"], ["gone"], [])
    assert backend.load_flow(flow).meta["resumes"] == resumes  # a plan changes nothing
    assert "reuse     s0" in run_cli(capsys, backend, "plan", flow, "--allow", "tests.").stdout


# ------------------------------------------------------------------ actions


def test_release_fences_the_holder(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    flow = store(backend, RUNNING)
    token = backend.claim(flow, "r1", 60.0)
    out = run_cli(capsys, backend, "release", flow, "--force", "--yes")
    assert out.code == 0 and "fenced r1's claim" in out.stdout
    with pytest.raises(ClaimLost):
        backend.save_task(token, task("s0", SUCCESS))
    record = backend.load_flow(flow)
    assert backend.current_claim(flow) is None and (record.state, record.owner) == (RUNNING, None)
    assert record.epoch > token.epoch and flow in backend.find_runnable(10)
    [note] = run_cli(capsys, backend, "show", flow, "--json").json()["operations"]
    assert note["action"] == "release" and note["fenced"] == f"{token.claim_id}@{token.epoch}"


def test_release_asks_a_live_owner_and_refuses_when_nobody_would_act(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    present(backend, "r1", ["tests."])
    flow, ghostly, free = store(backend, RUNNING), store(backend, RUNNING), store(backend, PENDING)
    token = backend.claim(flow, "r1", 60.0)
    ghost = backend.claim(ghostly, "ghost", 60.0)  # held by no live replica

    out = run_cli(capsys, backend, "release", flow, "--yes")
    assert out.code == 0 and f"asked r1 to hand flow {flow} back (claim epoch {token.epoch})" in out.stdout
    [request] = backend.load_handovers("r1")
    assert (request.flow_id, request.epoch, request.drain) == (flow, token.epoch, False)
    backend.save_task(token, task("s0", SUCCESS))  # only asked: the owner is not fenced

    refused = run_cli(capsys, backend, "release", ghostly, "--yes")
    assert bad_input(refused) and "no live replica" in refused.stderr and "--force" in refused.stderr
    backend.renew(ghost, 60.0)  # nothing changed
    assert backend.load_handovers("ghost") == []

    unclaimed = run_cli(capsys, backend, "release", free, "--yes")
    assert unclaimed.code == 0 and "not claimed: nothing to hand back" in unclaimed.stdout

    assert bad_input(run_cli(capsys, backend, "drain", "nobody", "--yes"))
    drained = run_cli(capsys, backend, "drain", "r1", "--yes")
    assert drained.code == 0 and "asked replica r1 to hand back its 1 flow(s)" in drained.stdout
    assert {r.drain for r in backend.load_handovers("r1")} == {True, False}
    listed = run_cli(capsys, backend, "replicas")
    assert "DRAINING" in listed.stdout and "yes" in listed.stdout
    assert "lifted" in run_cli(capsys, backend, "drain", "r1", "--undo").stdout
    assert "was not drained" in run_cli(capsys, backend, "drain", "r1", "--undo").stdout
    assert [r.drain for r in backend.load_handovers("r1")] == [False]


def test_cancel(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    flow = store(backend, RUNNING)
    token = backend.claim(flow, "r1", 60.0)
    out = run_cli(capsys, backend, "cancel", flow, "--yes")
    assert out.code == 0 and "no task starts again" in out.stdout
    with pytest.raises(ClaimLost):
        backend.save_task(token, task("s1", RUNNING))
    record = backend.load_flow(flow)
    assert record.state == CANCELLED and "cancelled by operator" in (record.reason or "")
    assert flow not in backend.find_runnable(10) and backend.current_claim(flow) is None
    finished = store(backend, SUCCESS)
    refused = run_cli(capsys, backend, "cancel", finished, "--yes")
    assert bad_input(refused) and "it is SUCCESS" in refused.stderr
    assert backend.load_flow(finished).state == SUCCESS


def test_retry_of_failed_flows(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    reverted = store(backend, REVERTED, tasks=[task("s0", REVERTED, failure=FAILED, attempts=3)],
                     meta={"takeovers": 2, "progress_mark": 1})
    out = run_cli(capsys, backend, "retry", reverted, "--yes")
    assert out.code == 0 and "tasks back to PENDING: s0" in out.stdout
    flow, [s0] = backend.load_flow(reverted), backend.load_tasks(reverted).values()
    assert (flow.state, flow.reason, flow.owner, flow.meta["takeovers"]) == (RUNNING, None, None, 0)
    assert (s0.state, s0.attempts, s0.failure) == (PENDING, 3, None)
    assert s0.meta["retried"]["from_state"] == REVERTED and "first_started" not in s0.meta
    assert reverted in backend.find_runnable(10)

    failed = store(backend, FAILURE, tasks=[task("s0", REVERT_FAILURE), task("s1", FAILURE, failure=FAILED)])
    assert bad_input(run_cli(capsys, backend, "retry", failed, "--task", "nosuch", "--yes"))
    assert run_cli(capsys, backend, "retry", failed, "--task", "s1", "--yes").code == 0
    states = {t: d.state for t, d in backend.load_tasks(failed).items()}
    assert states == {"s0": REVERT_FAILURE, "s1": PENDING}
    again = run_cli(capsys, backend, "retry", failed, "--yes")  # RUNNING now
    assert bad_input(again) and "it is RUNNING" in again.stderr


def test_retry_of_a_held_flow_needs_a_choice(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    change = {"task": "s0", "stored": "0.9", "current": "1.0", "policy": "fail"}
    held = store(backend, HELD, tasks=[task("s0", SUCCESS, version="0.9")],
                 meta={"diff": {"added": [], "unmatched": [], "version_changed": [change]}, "takeovers": 4})
    refused = run_cli(capsys, backend, "retry", held, "--yes")
    assert bad_input(refused) and "--rerun" in refused.stderr and backend.load_flow(held).state == HELD
    assert bad_input(run_cli(capsys, backend, "retry", held, "--rerun", "--reuse"))
    out = run_cli(capsys, backend, "retry", held, "--task", "s0", "--reuse", "--yes")
    assert out.code == 0 and "s0=reuse" in out.stdout
    flow = backend.load_flow(held)
    assert (flow.state, flow.meta["version_decisions"], flow.meta["takeovers"]) == (RUNNING, {"s0": "reuse"}, 0)
    assert backend.load_tasks(held)["s0"].state == SUCCESS  # a HELD retry resets no task


def test_purge(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    long_ago = time.time() - 3 * DAY
    old = store(backend, SUCCESS, updated_at=long_ago, tasks=[task("s0", SUCCESS)])
    backend.record_decline(old, Decline("r1", "no", time.time()))
    held_open = store(backend, CANCELLED, updated_at=long_ago)
    backend.claim(held_open, "r1", 60.0)
    recent = store(backend, SUCCESS)
    running = store(backend, RUNNING, updated_at=long_ago)

    dry = run_cli(capsys, backend, "purge", "--finished-before", "1d", "--dry-run")
    assert dry.code == 0 and f"would purge {old}" in dry.stdout and f"would purge {held_open}" in dry.stdout
    assert all(backend.load_flow(f) for f in (old, held_open, recent, running))  # nothing changed
    assert backend.load_tasks(old) and backend.load_declines(old)

    out = run_cli(capsys, backend, "purge", "--finished-before", "1d", "--yes")
    assert out.code == 0 and f"purged {old}" in out.stdout and f"skipped {held_open}" in out.stdout
    with pytest.raises(FlowNotFound):
        backend.load_flow(old)
    assert {f.id for f in backend.list_flows()} == {held_open, recent, running}


def test_a_purge_with_nothing_to_purge_says_it_purged_nothing(backend: Backend,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Not what a dry run would have done: ``--json`` says ``dry_run: false``."""
    store(backend, SUCCESS)  # too recent
    out = run_cli(capsys, backend, "purge", "--finished-before", "1d", "--yes")
    assert out.code == 0 and out.stdout.startswith("purged 0 flow(s)"), out
    report = run_cli(capsys, backend, "purge", "--finished-before", "1d", "--yes", "--json").json()
    assert (report["dry_run"], report["flows"]) == (False, [])


def test_actions_ask_on_a_terminal(backend: Backend, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    flow = store(backend, RUNNING)
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    refused = run_cli(capsys, backend, "cancel", flow)
    assert refused.code == 2 and "[y/N]" in refused.stderr and "nothing was changed" in refused.stderr
    assert backend.load_flow(flow).state == RUNNING
    monkeypatch.setattr("sys.stdin", _Terminal("y\n"))
    assert run_cli(capsys, backend, "cancel", flow).code == 0
    assert backend.load_flow(flow).state == CANCELLED


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# -------------------------------------------------------------------- check


def test_check_passes_on_a_healthy_backend(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    present(backend, "r1", ["tests."])
    out = run_cli(capsys, backend, "check")
    assert out.code == 0 and out.stdout.rstrip().endswith("check: OK"), out
    assert "1 live replica(s) running flowbaton 0.1.0" in out.stdout


@pytest.mark.redis
def test_check_fails_on_a_redis_that_may_evict_claims(
    make_redis_server: object, capsys: pytest.CaptureFixture[str]
) -> None:
    server = make_redis_server(config={"maxmemory-policy": "allkeys-lru"})  # type: ignore[operator]
    out = run_cli(capsys, server.url(namespace="chk"), "check")
    assert out.code == 1 and "PROBLEM  unsafe backend setting" in out.stdout and "allkeys-lru" in out.stdout


@pytest.mark.redis
def test_check_fails_on_an_unreachable_backend(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "redis://127.0.0.1:1/0?retry_deadline=0.5", "check")
    assert out.code == 1 and "backend unreachable" in out.stdout


@pytest.mark.redis
def test_check_waits_for_an_unreachable_backend_as_briefly_as_the_other_commands(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """A person waits at the terminal: ``check`` gives up after the CLI's
    patience like ``flows`` does, not after a replica's 10 s retry deadline."""
    out = run_cli(capsys, "redis://127.0.0.1:1/0", "check")
    assert out.code == 1 and f"unavailable for {CLI_PATIENCE:g}s" in out.stdout, out


# ---------------------------------------------------------------- bad input


def test_bad_input_is_one_line_and_exit_2(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    flow = store(backend, RUNNING)
    cases = [
        ("show", "nosuch"), ("plan", "nosuch", "--allow", "tests."), ("release", "nosuch", "--yes"),
        ("cancel", "nosuch", "--yes"),
        ("retry", "nosuch", "--yes"), ("retry", flow, "--yes"), ("flows", "--since", "yesterday"),
        ("purge", "--finished-before", "soon"), ("purge",), ("claims", "--owner"),
    ]
    for argv in cases:
        out = run_cli(capsys, backend, *argv)
        assert bad_input(out), (argv, out)


def test_a_script_is_not_asked(tmp_path: Path) -> None:
    """As a separate process with stdin not a terminal: no prompt, it acts."""
    from flowbaton.backends import open_backend

    from .cluster import REPO, env

    url = f"sqlite:///{tmp_path / 'flows.db'}"
    with open_backend(url) as backend:
        flow = store(backend, RUNNING)
        done = subprocess.run([sys.executable, "-m", "flowbaton", "--backend", url, "cancel", flow], cwd=REPO,
                              env=env(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "cancelled flow" in done.stdout and done.stderr == "", done
        assert backend.load_flow(flow).state == CANCELLED
