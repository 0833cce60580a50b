"""The small ones of docs/security.md (CLI inputs, terminal output, TLS), each reproduced as reported.

Stored text with terminal escape sequences, CLI input that used to end in a
traceback (``inf``/``nan`` durations, a malformed backend URL, 900-deep
JSON), a plain dict shaped like a codec value, a task id no backend can
store, the SQLite file's mode, and ``purge`` deleting FAILURE flows and
flows that finished a moment ago.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.base import Backend
from flowbaton.backends.errors import DefinitionError, FlowNotFound
from flowbaton.backends.records import ReplicaInfo
from flowbaton.backends.states import FAILURE, PENDING, REVERTED, RUNNING, SUCCESS
from flowbaton.cli.main import build_parser
from flowbaton.cli.terminal import printable
from flowbaton.engine import Flow, Gate, Linear, Task, register_codec, task
from flowbaton.engine.codec import TAG, decode, encode
from tests.coordinator.ops_helpers import bad_input, run_cli, store
from tests.coordinator.ops_helpers import task as task_detail
from tests.engine.helpers import run_once, submit

pytestmark = pytest.mark.security

DAY = 86400.0
# Moves the cursor up, clears the line and draws a state line of its own.
FAKE_LINE = "\x1b[1A\x1b[2K\rstate     SUCCESS\n\x07\x9b2J\u202e"


def plant(backend: Backend, flow_id: str, **fields: Any) -> None:
    """Overwrite fields of a stored flow, as anyone with write access can."""
    token = backend.claim(flow_id, "attacker", 30.0)
    flow = backend.load_flow(flow_id)
    for name, value in fields.items():
        setattr(flow, name, value)
    backend.save_flow(token, flow)
    backend.release(token)


def raw_controls(text: str) -> list[str]:
    """Characters a terminal would act on, other than the newlines between lines."""
    return [c for c in text if c != "\n" and printable(c) != c]


# ------------------------------------------------------- escape sequences


def test_escape_sequences_in_stored_text_are_shown_escaped(backend: Backend,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    failure = {"type": "builtins.RuntimeError", "message": FAKE_LINE, "traceback": "..."}
    flow_id = store(backend, REVERTED, tasks=[task_detail("s0", REVERTED, failure=failure)])
    plant(backend, flow_id, name=f"innocent{FAKE_LINE}", reason=FAKE_LINE)

    shown = run_cli(capsys, backend, "show", flow_id)
    assert shown.code == 0 and raw_controls(shown.stdout) == [], shown
    state_lines = [line for line in shown.stdout.splitlines() if line.startswith("state")]
    assert len(state_lines) == 1 and state_lines[0].startswith("state     REVERTED"), shown.stdout
    assert "\\x1b[1A\\x1b[2K\\x0dstate     SUCCESS\\x0a\\x07\\x9b2J\\u202e" in shown.stdout

    listed = run_cli(capsys, backend, "flows")
    assert listed.code == 0 and raw_controls(listed.stdout) == [] and "innocent\\x1b" in listed.stdout
    assert len(listed.stdout.splitlines()) == 2  # header and the one flow, nothing drawn in between

    exact = run_cli(capsys, backend, "show", flow_id, "--json").json()
    assert (exact["name"], exact["reason"]) == (f"innocent{FAKE_LINE}", FAKE_LINE)
    assert exact["tasks"][0]["failure"]["message"] == FAKE_LINE
    assert run_cli(capsys, backend, "flows", "--json").json()[0]["name"] == f"innocent{FAKE_LINE}"


def test_hostile_builds_in_stored_records_are_shown_escaped_and_change_nothing(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    """A build is text anyone with store access may write, in a flow's meta
    and in a replica's presence: shown escaped, never compared as a version,
    and no allowance is written over it."""
    backend.register_replica(ReplicaInfo("r1", "h", 1, time.time(), "0.1.0", ["tests."], build="2.0"), 120.0)
    flow_id = store(backend, PENDING)
    plant(backend, flow_id, meta={"tasks": ["s0", "s1"], "build": FAKE_LINE, "allowed_build": FAKE_LINE})
    for argv in (("flows", "--stranded"), ("show", flow_id), ("plan", flow_id, "--allow", "tests.", "--build", "1")):
        out = run_cli(capsys, backend, *argv)
        listed_stranded = 1 if argv[0] == "flows" else 0  # flows --stranded exits 1 when it lists any
        assert out.code == listed_stranded and raw_controls(out.stdout) == [] and "meta.build" in out.stdout, out
    before = backend.load_flow(flow_id).to_json()
    refused = run_cli(capsys, backend, "retry", flow_id, "--allow-build", "1.0", "--yes")
    assert bad_input(refused) and raw_controls(refused.stderr.rstrip("\n")) == [], refused
    assert backend.load_flow(flow_id).to_json() == before

    backend.register_replica(ReplicaInfo("r2", "h", 2, time.time(), "0.1.0", ["tests."], build=FAKE_LINE), 120.0)
    replicas = run_cli(capsys, backend, "replicas")
    assert replicas.code == 0 and raw_controls(replicas.stdout) == [] and "\\x1b[1A" in replicas.stdout
    assert run_cli(capsys, backend, "replicas", "--json").json()["replicas"][1]["build"] == FAKE_LINE


def test_printable_escapes_controls_bidi_and_surrogates_only() -> None:
    assert printable("a\x1b[31mb\r\n\t\x00\x7f\x85") == "a\\x1b[31mb\\x0d\\x0a\\x09\\x00\\x7f\\x85"
    assert printable("\u202eevil\u2066\ud800") == "\\u202eevil\\u2066\\ud800"
    assert printable("plain ünïcode — 流れ \\x1b") == "plain ünïcode — 流れ \\x1b"
    assert printable(printable(FAKE_LINE)) == printable(FAKE_LINE)


# ------------------------------------------------- no traceback, exit 2


@pytest.mark.parametrize("age", ["inf", "nan", "-1", "-inf", "1e400", "Infinity", "1e12d"])
def test_purge_refuses_ages_that_are_no_duration(backend: Backend, capsys: pytest.CaptureFixture[str],
                                                 age: str) -> None:
    old = store(backend, SUCCESS, updated_at=time.time() - 3 * DAY)
    out = run_cli(capsys, backend, "purge", "--finished-before", age, "--yes")
    assert bad_input(out), out
    assert backend.load_flow(old).state == SUCCESS


@pytest.mark.parametrize("argv", [
    ("flows", "--since", "nan"), ("flows", "--since", "inf"), ("submit", "x:y", "--timeout", "nan"),
    ("submit", "x:y", "--timeout", "inf"), ("replica", "--allow", "x.", "--lease", "nan"),
    ("replica", "--allow", "x.", "--lease", "inf"), ("replica", "--allow", "x.", "--concurrency", "1e3"),
])
def test_nan_and_inf_are_refused_everywhere(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    backend = open_backend("memory://")
    out = run_cli(capsys, backend, *argv)
    assert bad_input(out), out


@pytest.mark.parametrize("argv", [
    ("replica", "--allow", "x.", option, value)
    for option in ("--lease", "--task-timeout", "--build-timeout", "--stop-timeout") for value in ("1e12", "1e300")
] + [("submit", "x:y", "--timeout", "1e300")])
def test_seconds_longer_than_a_century_are_refused(capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]) -> None:
    """Finite, yet past what a thread can wait (``threading.TIMEOUT_MAX``):
    a replica given ``--lease 1e12`` died in its lease thread with OverflowError.
    Parsed only: a replica that accepted it would serve until killed."""
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.strip().splitlines()) == 1 and "century" in err, err


@pytest.mark.parametrize("url", ["redis://[::1/0", "redis://:s3cret@[::1/0", "zookeeper://[::1:2181/x",
                                 "sqlite://[::1/x.db", "memory://[/"])
def test_a_malformed_backend_url_is_one_line(capsys: pytest.CaptureFixture[str], url: str) -> None:
    out = run_cli(capsys, url, "flows")
    assert bad_input(out) and "s3cret" not in out.stderr, out


@pytest.mark.parametrize("depth", [900, 100_000])
def test_deeply_nested_json_arguments_are_one_line(capsys: pytest.CaptureFixture[str], depth: int) -> None:
    backend = open_backend("memory://")
    for option in ("--kwargs", "--inputs"):
        out = run_cli(capsys, backend, "submit", "tests.coord_flows:steps", option,
                      '{"a":' * depth + "1" + "}" * depth)
        assert bad_input(out) and "nested deeper" in out.stderr, out
    out = run_cli(capsys, backend, "submit", "tests.coord_flows:steps", "--args", "[" * depth + "]" * depth)
    assert bad_input(out), out
    assert backend.list_flows() == []


def test_json_arguments_refuse_nan(capsys: pytest.CaptureFixture[str]) -> None:
    backend = open_backend("memory://")
    out = run_cli(capsys, backend, "submit", "tests.coord_flows:steps", "--kwargs", '{"n": NaN}')
    assert bad_input(out) and "NaN" in out.stderr, out
    assert backend.list_flows() == []


# ------------------------------------------------------------------ codec


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y


register_codec(Point, "test-point", lambda p: [p.x, p.y], lambda v: Point(*v))
SHAPED = {TAG: "test-point", "value": [1, 2]}
_gate: dict[str, Gate] = {}


@task(id="shaped", provides="shape")
def _shaped() -> dict[str, Any]:
    _gate["now"].stop("stop after the first task, so the next run is a resume")
    return dict(SHAPED)


@task(id="inspect")
def _inspect(shape: Any) -> dict[str, Any]:
    return {"type": type(shape).__name__, "value": shape if isinstance(shape, dict) else None}


def shaped_flow() -> Flow:
    return Linear("shaped", _shaped, _inspect)


def test_a_plain_dict_shaped_like_a_codec_value_stays_a_dict_across_a_resume(backend: Backend) -> None:
    flow = submit(backend, f"{__name__}:shaped_flow")
    _gate["now"] = Gate()
    first = run_once(backend, flow.id, gate=_gate["now"])
    assert first.state == RUNNING and backend.load_tasks(flow.id)["shaped"].state == SUCCESS
    _gate["now"] = Gate()
    second = run_once(backend, flow.id, replica="r2", gate=_gate["now"])
    assert second.state == SUCCESS, second
    assert second.results["inspect"] == {"type": "dict", "value": SHAPED}


def test_codec_escaping_round_trips_and_old_records_decode_the_same() -> None:
    for value in (SHAPED, {TAG: "dict", "value": {}}, {TAG: 1}, [{TAG: "x", "a": {TAG: "y"}}], {"a": SHAPED}):
        assert decode(json.loads(json.dumps(encode(value, "v")))) == value
    assert encode({"plain": 1}, "v") == {"plain": 1}  # no tag key: stored as it always was
    point = decode(encode(Point(3, 4), "v"))
    assert isinstance(point, Point) and (point.x, point.y) == (3, 4)
    # A record written before the escaping: codec values and odd tagged dicts read as before.
    assert isinstance(decode({TAG: "test-point", "value": [1, 2]}), Point)
    assert decode({TAG: "unknown", "value": 1}) == {TAG: "unknown", "value": 1}
    with pytest.raises(ValueError, match="reserved"):
        register_codec(complex, "dict", str, complex)


# --------------------------------------------------------------- task ids


@pytest.mark.parametrize("bad", ["lone\ud800surrogate", "", "tab\there", "esc\x1b[2J", "del\x7f", "c1\x85",
                                 "x" * 201])
def test_a_task_id_no_backend_can_store_is_refused_at_definition(bad: str) -> None:
    with pytest.raises(DefinitionError, match="task id"):
        task(id=bad)(lambda: None)

    class Bad(Task):
        id = bad

    with pytest.raises(DefinitionError, match="task id"):
        Bad()
    with pytest.raises(DefinitionError, match="task id"):
        _shaped.clone(id=bad)


def test_the_longest_and_unicode_task_ids_are_stored(backend: Backend) -> None:
    from flowbaton.backends.records import TaskDetail

    for task_id in ("x" * 200, "流れ-ünï-\u202e"):
        task(id=task_id)(lambda: None)  # accepted at definition ...
        flow = store(backend, SUCCESS)
        token = backend.claim(flow, "r1", 30.0)
        backend.save_task(token, TaskDetail(task_id, SUCCESS, 1, version="1.0", attempts=1, epoch=token.epoch))
        backend.release(token)
        assert task_id in backend.load_tasks(flow)  # ... and every backend stores it


# ------------------------------------------------------------------ sqlite


def test_a_new_sqlite_file_is_private_and_an_existing_one_keeps_its_mode(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        backend = open_backend(f"sqlite:///{tmp_path / 'new.db'}")
        store(backend, SUCCESS)
        files = sorted(p.name for p in tmp_path.iterdir())
        assert files == ["new.db", "new.db-shm", "new.db-wal"]
        assert {stat.S_IMODE((tmp_path / f).stat().st_mode) for f in files} == {0o600}
        backend.close()
        shared = tmp_path / "shared.db"
        shared.touch(mode=0o640)
        open_backend(f"sqlite:///{shared}").close()
        assert stat.S_IMODE(shared.stat().st_mode) == 0o640
    finally:
        os.umask(old_umask)


# ------------------------------------------------------------------- purge


def test_purge_keeps_failure_flows_unless_asked(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    long_ago = time.time() - 3 * DAY
    failed = store(backend, FAILURE, updated_at=long_ago)
    done = store(backend, SUCCESS, updated_at=long_ago)
    out = run_cli(capsys, backend, "purge", "--finished-before", "1d", "--yes")
    assert out.code == 0 and f"purged {done}" in out.stdout and failed not in out.stdout, out
    assert backend.load_flow(failed).state == FAILURE
    out = run_cli(capsys, backend, "purge", "--finished-before", "1d", "--include-failed", "--yes")
    assert out.code == 0 and f"purged {failed}" in out.stdout, out
    with pytest.raises(FlowNotFound):
        backend.load_flow(failed)


@pytest.mark.parametrize("age", ["0", "0s", "59m", "10s"])
def test_purge_refuses_a_young_age_without_force(backend: Backend, capsys: pytest.CaptureFixture[str],
                                                 age: str) -> None:
    just_now = store(backend, SUCCESS, updated_at=time.time() - 20)
    for extra in ((), ("--dry-run",)):
        out = run_cli(capsys, backend, "purge", "--finished-before", age, "--yes", *extra)
        assert bad_input(out) and "--force" in out.stderr, out
    assert backend.load_flow(just_now).state == SUCCESS
    if age in ("0", "10s"):
        forced = run_cli(capsys, backend, "purge", "--finished-before", age, "--yes", "--force")
        assert forced.code == 0 and f"purged {just_now}" in forced.stdout, forced
        with pytest.raises(FlowNotFound):
            backend.load_flow(just_now)


def test_a_value_deeper_than_a_record_may_nest_is_refused_when_encoded() -> None:
    """Stored records are refused on read past records.MAX_DEPTH; the codec
    refuses such a value first, so it is the task's failure, not a held flow."""
    from flowbaton.backends.records import MAX_DEPTH as RECORD_DEPTH
    from flowbaton.engine.codec import MAX_DEPTH, encode
    from flowbaton.engine.errors import NotJSONError

    assert MAX_DEPTH < RECORD_DEPTH
    value: list[object] = []
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert encode(value, "result") == value
    with pytest.raises(NotJSONError, match="nested deeper than"):
        encode([value], "result")


@pytest.mark.parametrize("argv", [["show", "\ud800"], ["flows", "--owner", "a\udcffb"], ["cancel", "x\udc80", "--yes"]])
def test_arguments_that_are_not_utf8_text_are_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Undecodable command-line bytes reach Python as lone surrogates; on
    SQLite they raised UnicodeEncodeError from inside a query."""
    out = run_cli(capsys, f"sqlite:///{tmp_path / 'flows.db'}", *argv)
    assert bad_input(out) and "not valid UTF-8 text" in out.stderr, out
