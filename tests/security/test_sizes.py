"""docs/security.md, "Limits": sizes. Every backend takes ``max_record_bytes``; a
result over it fails its task once (through the retry policy), never a
write that fails and a task run again on every claim; batches never exceed
what the server takes; submit keeps half the limit for the engine's own
metadata, or refuses clearly.

Most tests set a small limit in the URL to stay fast; a few use the
defaults (ZooKeeper 1,000,000 bytes, the others 4 MiB) with real sizes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from tenacity import stop_after_attempt

import flowbaton
from flowbaton import Flow, Linear, Retry, task
from flowbaton.backends import open_backend
from flowbaton.backends.base import Backend
from flowbaton.backends.errors import BadBackendURL, FlowNotFound, ResultTooLarge
from flowbaton.backends.limits import DEFAULT_MAX_RECORD_BYTES, ZOOKEEPER_MAX_RECORD_BYTES, FlowTooLarge
from flowbaton.backends.records import ClaimToken, FlowDetail, TaskDetail
from flowbaton.backends.states import FAILURE, PENDING, REVERTED, SUCCESS
from flowbaton.engine.lifecycle import new_flow_detail
from flowbaton.engine.sizes import fit_flow, record_size
from tests.conftest import make_url
from tests.coordinator.inprocess import LocalReplicas
from tests.coordinator.ops_helpers import run_cli
from tests.servers import until

pytestmark = pytest.mark.security

FAILED = (FAILURE, REVERTED)  # a failed task without a revert function is then marked reverted
LIMIT = 20_000  # small, so that oversized records cost nothing to make
HERE = "tests.security.test_sizes"


# ------------------------------------------------------------ the flows


def count(counter: str) -> None:
    """One line per execution: the proof of how often a task ran."""
    with open(counter, "a", encoding="utf-8") as out:
        out.write("run\n")


@task(id="big")
def big_result(counter: str, size: int) -> str:
    count(counter)
    return "x" * size


@task(id="big", retry=Retry(stop=stop_after_attempt(3)))
def big_result_retried(counter: str, size: int) -> str:
    count(counter)
    return "x" * size


@task(id="loud")
def loud_failure(counter: str, size: int) -> None:
    count(counter)
    raise RuntimeError("y" * size)


@task(id="long-int")
def long_int(counter: str) -> int:
    count(counter)
    return 10 ** 5000  # past CPython's 4300-digit int-to-text limit: json.dumps raises ValueError


@task(id="after")
def after(counter: str) -> str:
    count(counter)
    return "done"


@task
def noop(counter: str) -> int:
    return 1


def one_big() -> Flow:
    return Linear("one-big", big_result)


def retried_big() -> Flow:
    return Linear("retried-big", big_result_retried)


def loud() -> Flow:
    return Linear("loud", loud_failure)


def long_int_then_after() -> Flow:
    return Linear("long-int-then-after", long_int, after)


def big_then_after() -> Flow:
    return Linear("big-then-after", big_result, after)


def task_ids(n: int) -> list[str]:
    return [f"a-task-with-a-rather-long-identifier-{i:05d}" for i in range(n)]


def many(n: int) -> Flow:
    """``n`` tasks with long ids: the task list in the flow's meta is O(n)."""
    return Linear("many", *[noop.clone(id=tid) for tid in task_ids(n)])


# ------------------------------------------------------------ helpers


def with_limit(url: str, limit: int) -> str:
    return f"{url}{'&' if '?' in url else '?'}max_record_bytes={limit}"


def runs(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


@pytest.fixture
def small(backend_url: str) -> Iterator[Backend]:
    store = open_backend(with_limit(backend_url, LIMIT))
    try:
        yield store
    finally:
        store.close()


def run_here(store: Backend, factory: str, **inputs: object) -> flowbaton.FlowReport:
    return flowbaton.run(f"{HERE}:{factory}", inputs=inputs, backend=store, lease=5.0)


def claimed(store: Backend, *, inputs: dict[str, object] | None = None) -> tuple[str, ClaimToken]:
    detail = new_flow_detail(f"{HERE}:one_big", inputs=inputs or {"counter": "/dev/null", "size": 1})
    store.create_flow(detail)
    return detail.id, store.claim(detail.id, "tester", 30.0)


def record(task_id: str, size: int) -> TaskDetail:
    return TaskDetail(task_id, SUCCESS, "r" * size, None, "1.0", 1, time.time(), time.time(), "tester", None, 1, {})


# ----------------------------------------------------- the option itself


def test_every_backend_takes_the_option(backend_url: str) -> None:
    with open_backend(with_limit(backend_url, 12_345)) as store:
        assert store.max_record_bytes == 12_345
    with open_backend(backend_url) as store:
        zookeeper = backend_url.startswith("zookeeper")
        assert store.max_record_bytes == (ZOOKEEPER_MAX_RECORD_BYTES if zookeeper else DEFAULT_MAX_RECORD_BYTES)


@pytest.mark.parametrize("value", ["lots", "10", "-1"])
def test_a_bad_limit_is_named(backend_url: str, value: str) -> None:
    with pytest.raises(BadBackendURL, match="max_record_bytes"):
        open_backend(f"{backend_url}{'&' if '?' in backend_url else '?'}max_record_bytes={value}")


# --------------------------------------------- an oversized task result


def test_result_over_the_limit_fails_its_task_once(
    small: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    counter = tmp_path / "runs"
    report = run_here(small, "big_then_after", counter=str(counter), size=3 * LIMIT)
    assert runs(counter) == 1  # "big" once, and "after" never started
    assert report.state == REVERTED
    big = report.tasks["big"]
    assert big.state in FAILED and big.attempts == 1 and "after" not in report.tasks
    assert big.failure is not None and big.failure["type"].endswith("ResultTooLarge")
    message = big.failure["message"]
    assert "'big'" in message and "max_record_bytes 20,000" in message
    assert re.search(r"record of 6\d,\d{3} bytes, over the limit of [\d,]+ bytes", message), message
    out = run_cli(capsys, small, "show", report.id)
    assert out.code == 0 and "ResultTooLarge" in out.stdout and "max_record_bytes 20,000" in out.stdout


def test_an_int_too_long_for_json_fails_its_task_once(small: Backend, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    report = run_here(small, "long_int_then_after", counter=str(counter))
    assert runs(counter) == 1 and report.state == REVERTED
    failure = report.tasks["long-int"].failure
    assert failure is not None and failure["type"].endswith("NotJSONError")
    assert "store it as a str" in failure["message"]


def test_retries_of_an_oversized_result_follow_the_policy(small: Backend, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    report = run_here(small, "retried_big", counter=str(counter), size=3 * LIMIT)
    assert runs(counter) == 3  # stop_after_attempt(3): three runs, then it fails for good
    assert report.state == REVERTED
    assert report.tasks["big"].state in FAILED and report.tasks["big"].attempts == 3
    assert "ResultTooLarge" in (report.reason or "")


def test_a_result_under_the_limit_is_stored(small: Backend, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    report = run_here(small, "one_big", counter=str(counter), size=LIMIT // 2)
    assert report.state == SUCCESS and report.results["big"] == "x" * (LIMIT // 2)


def test_a_huge_failure_message_is_cut_not_refused(small: Backend, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    report = run_here(small, "loud", counter=str(counter), size=5 * LIMIT)
    assert runs(counter) == 1 and report.state == REVERTED
    failure = report.tasks["loud"].failure
    assert failure is not None and "characters cut to fit max_record_bytes" in failure["message"]
    assert record_size(report.tasks["loud"]) <= LIMIT


def test_replicas_fail_an_oversized_result_once(
    shared_backend_url: str, tmp_path: Path, local_replicas: LocalReplicas
) -> None:
    """The reported bug: the task stayed RUNNING and every claim ran it again
    until the flow was HELD as "crashing its replica"."""
    url = with_limit(shared_backend_url, LIMIT)
    counter = tmp_path / "runs"
    stores = [open_backend(url) for _ in range(2)]
    try:
        replicas = [local_replicas.add(store, lease=1.0).start() for store in stores]
        flow_id = replicas[0].submit(f"{HERE}:one_big", inputs={"counter": str(counter), "size": 2 * LIMIT})
        report = replicas[1].wait(flow_id, timeout=30)
        time.sleep(1.5)  # a re-run would come from another claim after the lease
    finally:
        local_replicas.close()
        for store in stores:
            store.close()
    assert report.state == REVERTED and runs(counter) == 1
    assert report.tasks["big"].state in FAILED


def test_zookeeper_default_limit_fails_a_1_2_mb_result_once(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    counter = tmp_path / "runs"
    with open_backend(make_url("zookeeper", request, tmp_path)) as zk:
        report = run_here(zk, "one_big", counter=str(counter), size=1_200_000)
        assert zk.load_flow(report.id).state == REVERTED  # the connection survived, records readable
    assert runs(counter) == 1
    message = report.tasks["big"].failure["message"]  # type: ignore[index]
    assert "max_record_bytes 1,000,000" in message and re.search(r"record of 1,200,\d{3} bytes", message)


@pytest.mark.parametrize("kind", ["sqlite", "redis", "memory"])
def test_default_limit_refuses_a_5_mb_result(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    counter = tmp_path / "runs"
    with open_backend(make_url(kind, request, tmp_path)) as store:
        report = run_here(store, "one_big", counter=str(counter), size=5_000_000)
        assert runs(counter) == 1 and report.state == REVERTED
        with pytest.raises(ResultTooLarge, match="4,194,304"):
            _, token = claimed(store)
            store.save_task(token, record("raw", 5_000_000))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_an_explicit_limit_refuses_a_large_write_before_writing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    with open_backend(with_limit(make_url(kind, request, tmp_path), 100_000)) as store:
        flow_id, token = claimed(store)
        with pytest.raises(ResultTooLarge) as caught:
            store.save_task(token, record("fat", 150_000))
        assert "'fat'" in str(caught.value) and "100,000" in str(caught.value)
        assert store.load_tasks(flow_id) == {}


# ------------------------------------------------------------- batches


def test_a_batch_over_the_limit_is_stored_in_parts(small: Backend) -> None:
    flow_id, token = claimed(small)
    part = int(LIMIT * 0.7)
    small.save_tasks(token, [record("one", part), record("two", part)])
    stored = small.load_tasks(flow_id)
    assert {t: len(d.result) for t, d in stored.items()} == {"one": part, "two": part}


def test_a_batch_with_one_record_over_the_limit_writes_nothing(small: Backend) -> None:
    flow_id, token = claimed(small)
    with pytest.raises(ResultTooLarge, match="'two'"):
        small.save_tasks(token, [record("one", 100), record("two", 2 * LIMIT)])
    assert small.load_tasks(flow_id) == {}


def test_zookeeper_two_700_kb_records_keep_the_connection(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Two 700 KB records in one multi made the server drop the connection."""
    with open_backend(make_url("zookeeper", request, tmp_path)) as zk:
        flow_id, token = claimed(zk)
        zk.save_tasks(token, [record("one", 700_000), record("two", 700_000)])
        stored = zk.load_tasks(flow_id)
        assert {t: len(d.result) for t, d in stored.items()} == {"one": 700_000, "two": 700_000}
        zk.renew(token, 30.0)  # the session is fine


def test_two_results_that_together_pass_the_limit_run_to_the_end(small: Backend, tmp_path: Path) -> None:
    """The runner sends a result with the next task's start as one batch."""
    counter = tmp_path / "runs"
    report = run_here(small, "big_then_after", counter=str(counter), size=int(LIMIT * 0.6))
    assert report.state == SUCCESS and runs(counter) == 2


# ------------------------------------------------------------- submit


def test_submit_refuses_a_flow_over_half_the_limit(small: Backend) -> None:
    detail = new_flow_detail(f"{HERE}:one_big", inputs={"counter": "-", "size": 1, "blob": "z" * LIMIT})
    with pytest.raises(FlowTooLarge) as caught:
        small.create_flow(detail)
    message = str(caught.value)
    assert detail.id in message and "over half the limit of 20,000 bytes" in message
    assert re.search(r"record is 2\d,\d{3} bytes", message)
    assert isinstance(caught.value, ResultTooLarge) and isinstance(caught.value, flowbaton.DefinitionError)
    with pytest.raises(FlowNotFound):
        small.load_flow(detail.id)


def test_submit_through_a_replica_refuses_clearly(backend_url: str, local_replicas: LocalReplicas) -> None:
    with open_backend(with_limit(backend_url, LIMIT)) as store:
        replica = local_replicas.add(store)
        with pytest.raises(FlowTooLarge, match="max_record_bytes"):
            replica.submit(f"{HERE}:one_big", inputs={"counter": "-", "size": 1, "blob": "z" * LIMIT})
        assert store.list_flows() == []


def test_a_flow_accepted_close_to_the_limit_runs_to_the_end(
    small: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Submitted a few bytes under the limit (its own data just under half,
    its task list the rest): what the run adds to its record would push it
    over, so the engine trims what it keeps instead of failing every write."""
    counter, n = tmp_path / "runs", 230

    def detail(pad: int) -> FlowDetail:
        made = new_flow_detail(f"{HERE}:many", kwargs={"n": n}, inputs={"counter": str(counter), "pad": "p" * pad},
                               flow_id="close-to-the-limit")
        made.meta = {"tasks": task_ids(n)}  # what the engine keeps, at submit or at the first start
        return made

    # 10 bytes short of the limit: whatever the run adds (its owner's id,
    # whose length varies with the pid; the poison counter) pushes it over.
    pad = 1 + LIMIT - 10 - record_size(detail(1))
    near = detail(pad)
    assert LIMIT - 60 < record_size(near) <= LIMIT and record_size(replace(near, meta={})) <= LIMIT // 2
    report = flowbaton.run(f"{HERE}:many", kwargs={"n": n}, inputs={"counter": str(counter), "pad": "p" * pad},
                           flow_id=near.id, backend=small, lease=5.0)
    assert report.state == SUCCESS and len(report.results) == n
    assert record_size(small.load_flow(report.id)) <= LIMIT
    assert "trimmed" in caplog.text  # it did need trimming


def test_a_flow_whose_task_list_alone_is_too_large_is_refused(small: Backend) -> None:
    detail = new_flow_detail(f"{HERE}:many", kwargs={"n": 600}, inputs={"counter": "-"})
    detail.meta = {"tasks": task_ids(600)}
    with pytest.raises(FlowTooLarge, match=r"over the limit of 20,000 bytes .*task list"):
        small.create_flow(detail)


def test_meta_of_a_long_history_is_trimmed_to_fit() -> None:
    """Worst case: 20 resumes each listing every task as added and unmatched."""
    ids = task_ids(500)
    diff = {"added": ids, "unmatched": ids, "version_changed": []}
    flow = FlowDetail("f", "many", f"{HERE}:many", inputs={"pad": "p" * (LIMIT // 2 - 400)}, reason="r" * 50_000,
                      meta={"tasks": ids, "unmatched": ids, "diff": diff, "takeovers": 2,
                            "resumes": [{"at": 1.0, "epoch": n, **diff} for n in range(20)]})
    fit_flow(flow, LIMIT)
    assert record_size(flow) <= LIMIT
    assert flow.meta["takeovers"] == 2  # the poison counter is never trimmed


def test_trimming_keeps_what_fits() -> None:
    ids = [f"t{i}" for i in range(30)]
    meta = {"tasks": ids, "resumes": [{"at": float(n), "added": ids} for n in range(20)]}
    flow = FlowDetail("f", "n", f"{HERE}:many", meta=meta)
    before = record_size(flow)
    fit_flow(flow, before)  # fits: unchanged
    assert flow.meta == meta
    fit_flow(flow, before - 100)  # a little over: only the old resumes go
    assert flow.meta["tasks"] == ids and len(flow.meta["resumes"]) == 1


def test_a_stored_flow_over_the_limit_is_declined_not_crashed_on(
    shared_backend_url: str, tmp_path: Path, local_replicas: LocalReplicas
) -> None:
    """A flow stored under a larger limit cannot be written under this one:
    every replica declines it with the reason, once per backoff, without a
    traceback, and runs no task of it."""
    counter = tmp_path / "runs"
    with open_backend(shared_backend_url) as roomy:
        detail = new_flow_detail(f"{HERE}:one_big", inputs={"counter": str(counter), "size": 1, "pad": "p" * LIMIT})
        roomy.create_flow(detail)
    with open_backend(with_limit(shared_backend_url, LIMIT)) as store:
        replica = local_replicas.add(store, lease=1.0).start()
        declines = until(lambda: store.load_declines(detail.id), 20, "a replica to decline the flow")
        flow = store.load_flow(detail.id)
        replica.stop()
    assert declines and "FlowTooLarge" in declines[0].reason and "max_record_bytes" in declines[0].reason
    assert flow.state == PENDING  # never written, nor held: a HELD record would not fit either
    assert runs(counter) == 0
