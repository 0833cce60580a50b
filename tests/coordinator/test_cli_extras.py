"""Submitting by name from a host without the code, progress while waiting,
shell completion, and -v: on every backend where a store is involved."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from flowbaton.backends.base import Backend
from flowbaton.backends.records import TaskDetail
from flowbaton.backends.states import PENDING, RUNNING, SUCCESS
from flowbaton.cli.progress import progress_line, wait_with_progress
from tests.servers import until

from .cluster import REPO
from .inprocess import LocalReplicas
from .ops_helpers import STEPS, bad_input, run_cli, store, task


def test_submit_by_name_imports_nothing_and_a_replica_validates(
    backend: Backend, capsys: pytest.CaptureFixture[str], local_replicas: LocalReplicas, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = tmp_path / "ledger"
    # An ops host without the service's code: the factory's module cannot be imported here.
    monkeypatch.setitem(sys.modules, "tests.coord_flows", None)  # type: ignore[arg-type]
    plain = run_cli(capsys, backend, "submit", STEPS, "--kwargs", '{"n": 2}', "--inputs", '{"ledger": "x"}')
    assert bad_input(plain), plain  # without --by-name the factory is imported, and is not here
    good = run_cli(capsys, backend, "submit", STEPS, "--by-name", "--kwargs", '{"n": 2}',
                   "--inputs", f'{{"ledger": "{ledger}", "pause": 0.0}}')
    wrong = run_cli(capsys, backend, "submit", STEPS, "--by-name", "--kwargs", '{"nope": 1}')
    assert good.code == 0 and wrong.code == 0, (good, wrong)
    assert bad_input(run_cli(capsys, backend, "submit", "not a name", "--by-name"))
    assert bad_input(run_cli(capsys, backend, "submit", "os:_exit", "--by-name"))
    good_id, wrong_id = good.stdout.strip(), wrong.stdout.strip()
    flow = backend.load_flow(good_id)
    assert (flow.factory, flow.name, flow.state, flow.kwargs) == (STEPS, "steps", PENDING, {"n": 2})

    monkeypatch.delitem(sys.modules, "tests.coord_flows")  # the replica has the code
    local_replicas.add(backend).start()
    until(lambda: backend.load_flow(good_id).state == SUCCESS, 20, "the flow submitted by name to run")
    until(lambda: backend.load_declines(wrong_id), 20, "the replica to decline the bad arguments")
    assert "nope" in backend.load_declines(wrong_id)[0].reason
    stranded = run_cli(capsys, backend, "flows", "--stranded", "--json")
    assert stranded.code == 1 and [r["id"] for r in stranded.json()] == [wrong_id]


def test_progress_line_and_the_wait_that_draws_it(backend: Backend) -> None:
    flow_id = store(backend, RUNNING, tasks=[task("s0", SUCCESS), task("s1", RUNNING)])
    flow, tasks = backend.load_flow(flow_id), backend.load_tasks(flow_id)
    assert progress_line(flow, tasks) == f"flow {flow_id[:12]}: RUNNING, 1/2 tasks done, running s1"
    assert progress_line(flow, {}) == f"flow {flow_id[:12]}: RUNNING, 0/2 tasks done"
    done = store(backend, SUCCESS, tasks=[task("s0", SUCCESS), task("s1", SUCCESS)])
    stream = io.StringIO()
    report = wait_with_progress(backend, done, 5.0, stream)
    assert report.state == SUCCESS and "2/2 tasks done" in stream.getvalue() and stream.getvalue().endswith("\n")
    with pytest.raises(TimeoutError):
        wait_with_progress(backend, flow_id, 0.2, io.StringIO())


def test_progress_of_a_flow_not_built_yet() -> None:
    from flowbaton.backends.records import FlowDetail

    flow = FlowDetail(id="abc", name="n", factory="a.b:c", state=PENDING)
    assert progress_line(flow, {"x": TaskDetail("x", RUNNING)}) == "flow abc: PENDING, 0/1 tasks done, running x"
    assert progress_line(flow, {}) == "flow abc: PENDING, 0/? tasks done"


def _complete(script: str, *words: str) -> list[str]:
    """COMPREPLY of the completion function for the command line ``words``
    (the last one being completed), in a real bash."""
    words_array = " ".join(f"'{w}'" for w in words)
    program = f"{script}\nCOMP_WORDS=({words_array}); COMP_CWORD={len(words) - 1}; _flowbaton; " \
              'printf "%s\\n" "${COMPREPLY[@]}"'
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.split()


def test_bash_completion() -> None:
    script = subprocess.run([sys.executable, "-m", "flowbaton", "completion", "bash"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert _complete(script, "flowbaton", "dr") == ["drain"]
    assert _complete(script, "flowbaton", "fl") == ["flows"]
    assert set(_complete(script, "flowbaton", "flows", "--f")) == {"--factory"}
    assert set(_complete(script, "flowbaton", "--backend", "x", "cancel", "--re")) == {"--revert"}
    assert _complete(script, "flowbaton", "flows", "--state", "HE") == ["HELD"]
    bad = subprocess.run([sys.executable, "-m", "flowbaton", "completion", "fish"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.splitlines()) == 1


def test_verbose_shows_the_drivers_own_messages() -> None:
    argv = [sys.executable, "-m", "flowbaton", "--backend", "zookeeper://127.0.0.1:1/x", "flows"]
    quiet = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    loud = subprocess.run([*argv[:3], "-v", *argv[3:]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == loud.returncode == 2
    assert len(quiet.stderr.splitlines()) == 1 and "kazoo" not in quiet.stderr
    assert "kazoo" in loud.stderr and loud.stderr.splitlines()[-1] == quiet.stderr.splitlines()[-1]
