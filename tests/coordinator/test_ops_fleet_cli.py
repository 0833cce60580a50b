"""The CLI at fleet scale on every backend: filters and pages, short ids,
bulk actions with a dry run, cancel with and without revert, ``--json`` of
actions, and the Python API (``flowbaton.ops``) printing the same JSON."""

from __future__ import annotations

import json
import time

import pytest

from flowbaton.backends.base import Backend
from flowbaton.backends.states import CANCELLED, FAILURE, HELD, PENDING, REVERTED, REVERTING, RUNNING, SUCCESS
from flowbaton.ops import Ops
from tests.servers import until

from .inprocess import LocalReplicas
from .ops_helpers import bad_input, run_cli, store, task

DAY = 86400.0


def ids(out: object) -> list[str]:
    return [row["id"] for row in out]  # type: ignore[attr-defined]


def _fleet(backend: Backend) -> dict[str, str]:
    old = time.time() - 2 * DAY
    return {
        "charge": store(backend, HELD, factory="billing.flows:charge", name="charge", updated_at=old),
        "refund": store(backend, HELD, factory="billing.flows:refund", name="refund", updated_at=old),
        "fresh": store(backend, HELD, factory="billing.flows:charge", name="charge"),
        "mail": store(backend, HELD, factory="mail.flows:send", name="send", updated_at=old),
        "done": store(backend, SUCCESS, factory="billing.flows:charge", name="charge", updated_at=old),
    }


def test_filters_and_pages(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    f = _fleet(backend)
    listed = lambda *argv: ids(run_cli(capsys, backend, "flows", *argv, "--json").json())  # noqa: E731
    assert listed("--factory", "billing.*") == [f["charge"], f["refund"], f["fresh"], f["done"]]
    assert listed("--factory", "billing.flows:charge", "--state", "HELD") == [f["charge"], f["fresh"]]
    assert listed("--name", "re*") == [f["refund"]]
    assert listed("--before", "1d") == [f["charge"], f["refund"], f["mail"], f["done"]]
    assert listed("--limit", "2") == [f["charge"], f["refund"]]
    assert listed("--limit", "2", "--offset", "3") == [f["mail"], f["done"]]
    assert listed("--offset", "5") == []
    for bad in (("--limit", "-1"), ("--offset", "x"), ("--before", "soon")):
        assert bad_input(run_cli(capsys, backend, "flows", *bad)), bad
    with Ops(backend) as ops:  # the Python API: the same rows, the same JSON
        rows = ops.flows(factory="billing.*", state=HELD, limit=1, offset=1)
        assert [r.id for r in rows] == [f["refund"]]
        cli = run_cli(capsys, backend, "flows", "--factory", "billing.*", "--state", "HELD", "--limit", "1",
                      "--offset", "1", "--json").stdout
        assert json.loads(cli) == [r.to_json() for r in rows]


def test_short_ids(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    a = store(backend, FAILURE, flow_id="feedbeefaa01", tasks=[task("s0", FAILURE)])
    b = store(backend, FAILURE, flow_id="feedbeefbb02")
    exact = store(backend, FAILURE, flow_id="feedbe")  # a full id that is also a prefix of both
    shown = run_cli(capsys, backend, "show", "feedbeefa", "--json")
    assert shown.code == 0 and shown.json()["id"] == a
    assert run_cli(capsys, backend, "show", "feedbe", "--json").json()["id"] == exact  # a full id wins
    ambiguous = run_cli(capsys, backend, "retry", "feedbee", "--yes")
    assert bad_input(ambiguous) and a in ambiguous.stderr and b in ambiguous.stderr and "ambiguous" in ambiguous.stderr
    assert backend.load_flow(a).state == FAILURE  # nothing changed
    short = run_cli(capsys, backend, "show", "feed")
    assert bad_input(short) and "at least 6" in short.stderr
    assert bad_input(run_cli(capsys, backend, "show", "0000000"))
    retried = run_cli(capsys, backend, "retry", "feedbeefb", "--yes", "--json")
    assert retried.code == 0 and retried.json()["flow_id"] == b and backend.load_flow(b).state == RUNNING


def test_bulk_cancel_with_a_dry_run(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    f = _fleet(backend)
    selection = ("--state", "HELD", "--factory", "billing.*", "--before", "1d")
    dry = run_cli(capsys, backend, "cancel", *selection, "--dry-run")
    assert dry.code == 0 and f"would cancel {f['charge']}" in dry.stdout and "would cancel 2 flow(s)" in dry.stdout
    assert backend.load_flow(f["charge"]).state == HELD  # a dry run changes nothing
    done = run_cli(capsys, backend, "cancel", *selection, "--yes", "--json")
    assert done.code == 0, done
    doc = done.json()
    assert doc["selected"] == [f["charge"], f["refund"]] and doc["skipped"] == []
    assert [r["state"] for r in doc["done"]] == [CANCELLED, CANCELLED]
    assert {k: backend.load_flow(v).state for k, v in f.items()} == {
        "charge": CANCELLED, "refund": CANCELLED, "fresh": HELD, "mail": HELD, "done": SUCCESS}
    again = run_cli(capsys, backend, "retry", "--factory", "billing.*", "--state", "CANCELLED", "--yes")
    assert again.code == 1 and "skipped" in again.stdout  # a cancelled flow is not retryable: reported, exit 1
    nothing = run_cli(capsys, backend, "cancel", "--yes")
    assert bad_input(nothing) and "filters" in nothing.stderr  # never "everything" by accident
    assert bad_input(run_cli(capsys, backend, "retry", "--state", "HELD", "--task", "s0", "--yes"))


def test_plain_cancel_leaves_no_task_running_and_revert_reverts(
    backend: Backend, capsys: pytest.CaptureFixture[str], local_replicas: LocalReplicas
) -> None:
    plain = store(backend, RUNNING, tasks=[task("s0", SUCCESS, result=1), task("s1", RUNNING)])
    out = run_cli(capsys, backend, "cancel", plain, "--yes", "--json")
    assert out.code == 0 and out.json()["stopped"] == ["s1"] and out.json()["state"] == CANCELLED
    tasks = backend.load_tasks(plain)
    assert tasks["s0"].state == SUCCESS and tasks["s1"].state == FAILURE
    assert tasks["s1"].failure and tasks["s1"].failure["type"] == "flowbaton.Cancelled"
    text = run_cli(capsys, backend, "cancel", "--help").stdout
    assert "nothing is reverted" in " ".join(text.split())

    reverted = store(backend, RUNNING, tasks=[task("s0", SUCCESS, result=1), task("s1", RUNNING)])
    out = run_cli(capsys, backend, "cancel", reverted, "--revert", "--yes")
    assert out.code == 0 and "reverts what finished" in out.stdout, out
    flow = backend.load_flow(reverted)
    assert flow.state == REVERTING and flow.owner is None and reverted in backend.find_runnable(10)
    assert backend.load_tasks(reverted)["s1"].state == RUNNING  # in doubt: the revert undoes it too

    local_replicas.add(backend).start()  # a replica takes the revert over like any other
    until(lambda: backend.load_flow(reverted).state == REVERTED, 20, "the revert to finish")
    assert {t: d.state for t, d in backend.load_tasks(reverted).items()} == {"s0": REVERTED, "s1": REVERTED}
    assert "cancelled by operator" in (backend.load_flow(reverted).reason or "")


def test_the_stranded_gauge_counts_what_flows_stranded_lists(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    from flowbaton.ops.stranded import count_stranded

    from .ops_helpers import present

    present(backend, "r1", ["tests."])
    store(backend, PENDING)  # r1 may run it
    nobody = store(backend, PENDING, factory="elsewhere.flows:job")  # no live replica may import it
    store(backend, SUCCESS, factory="elsewhere.flows:job")  # finished: not in the backlog
    listed = run_cli(capsys, backend, "flows", "--stranded", "--json")
    assert ids(listed.json()) == [nobody]
    assert count_stranded(backend) == 1 and backend.count_backlog() == 2


def test_pages_with_a_cursor(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    f = _fleet(backend)
    everything = ids(run_cli(capsys, backend, "flows", "--json").json())
    seen: list[str] = []
    argv = ["flows", "--limit", "2", "--json"]
    for _ in range(10):
        out = run_cli(capsys, backend, *argv)
        assert out.code == 0, out
        seen += ids(out.json())
        if "next page" not in out.stderr:
            break
        argv = ["flows", "--limit", "2", "--json", *out.stderr.split("next page: ")[1].split()]
    assert seen == everything and len(seen) == 5
    held = ids(run_cli(capsys, backend, "flows", "--limit", "10", "--state", "HELD", "--factory", "billing.*",
                       "--json").json())
    assert held == [f["charge"], f["refund"], f["fresh"]]
    assert bad_input(run_cli(capsys, backend, "flows", "--limit", "2", "--after", "nope"))
    assert bad_input(run_cli(capsys, backend, "flows", "--after", "1", "--stranded"))
    with Ops(backend) as ops:
        page = ops.flows_page(limit=3)
        rest = ops.flows_page(limit=3, after=page.next)
        assert [r.id for r in page.rows + rest.rows] == everything and rest.next is None
        assert page.to_json()["next"] == page.next
