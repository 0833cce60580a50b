"""docs/security.md, "Corrupt records": corrupt records are named, skipped in listings, held once,
and can be repaired from the CLI.

Each test plants the damage the way someone with write access to the store
would (tests/contract/corrupt.py writes through each backend's own client)
and checks what an operator and the replicas see: one line, never a
traceback; other flows still listed and still run. The hypothesis tests at
the end feed every record decoder arbitrary JSON values and bytes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbaton.backends import open_backend
from flowbaton.backends.base import Backend
from flowbaton.backends.errors import CorruptRecord, FlowNotFound
from flowbaton.backends.records import (
    MAX_DEPTH,
    ClaimInfo,
    Decline,
    FlowDetail,
    ReplicaInfo,
    TaskDetail,
    dumps,
)
from flowbaton.backends.states import CANCELLED, HELD, PENDING, RUNNING, SUCCESS
from flowbaton.coordinator.corrupt import CORRUPT_KEY
from tests.backends import backend_params
from tests.conftest import make_url
from tests.contract.corrupt import corrupt_claim, corrupt_flow, corrupt_replica, corrupt_task
from tests.coordinator.inprocess import LocalReplicas, submit_steps
from tests.coordinator.ops_helpers import Out, bad_input, present, run_cli, store
from tests.servers import until

pytestmark = pytest.mark.security

DEEP = "[" * 100_000 + "]" * 100_000  # RecursionError in json.loads before the fix


def _seed(backend: Backend) -> tuple[str, str, str]:
    """Three PENDING flows; the middle one is the one tests damage."""
    ids = (store(backend, PENDING), store(backend, PENDING), store(backend, PENDING))
    return ids


def _warned(out: Out, *names: str) -> bool:
    """One warning line on stderr, naming every one of ``names``, no traceback."""
    lines = out.stderr.strip().splitlines()
    return (len(lines) == 1 and lines[0].startswith("flowbaton: warning:")
            and all(n in lines[0] for n in names) and "Traceback" not in out.stderr)


def _with_field(flow_id: str, name: str, value: Any) -> str:
    """A well-formed flow record except for one field."""
    record = json.loads(FlowDetail(flow_id, "n", "tests.coord_flows:steps", created_at=1.0,
                                   updated_at=1.0).to_json())
    record[name] = value
    return json.dumps(record)  # allow_nan: NaN is written as the attacker would


# ---------------------------------------------------------- flow records


@pytest.mark.parametrize("garbage", [
    DEEP,
    '{"a":' * 5000 + "1" + "}" * 5000,
    "created_at:yesterday",
    "epoch:true",
    "created_at:NaN",
    "args:[1, [2, {\"deep\": " + "[" * 300 + "]" * 300 + "}]]",
], ids=["deep-array", "deep-object", "text-for-number", "bool-for-int", "nan", "deep-inside-field"])
def test_a_corrupt_flow_is_one_line_everywhere_and_hides_nothing(
    backend_url: str, backend: Backend, capsys: pytest.CaptureFixture[str], garbage: str
) -> None:
    good1, bad, good2 = _seed(backend)
    if ":" in garbage and not garbage.startswith("{"):
        name, _, value = garbage.partition(":")
        garbage = _with_field(bad, name, {"yesterday": "yesterday", "true": True, "NaN": math.nan}.get(
            value, json.loads(value) if value.startswith("[") else value))
    corrupt_flow(backend_url, bad, backend=backend, garbage=garbage)

    listed = run_cli(capsys, backend, "flows")
    assert listed.code == 0 and good1 in listed.stdout and good2 in listed.stdout
    assert bad not in listed.stdout and _warned(listed, bad)
    as_json = run_cli(capsys, backend, "flows", "--json")
    assert [row["id"] for row in as_json.json()] == [good1, good2]
    stranded = run_cli(capsys, backend, "flows", "--stranded")
    assert stranded.code == 1 and good1 in stranded.stdout  # exit 1: it lists stranded flows

    for argv in (("show", bad), ("release", bad, "--yes"), ("cancel", bad, "--yes"), ("retry", bad, "--yes")):
        out = run_cli(capsys, backend, *argv)
        assert bad_input(out), (argv, out)
        assert bad in out.stderr and "delete" in out.stderr, out.stderr
    assert run_cli(capsys, backend, "show", good1).code == 0


def test_a_deep_task_record_holds_its_flow_once_and_show_names_it(
    backend_url: str, backend: Backend, capsys: pytest.CaptureFixture[str], local_replicas: LocalReplicas,
    tmp_path: Path,
) -> None:
    coord = local_replicas.add(backend)
    bad = submit_steps(coord, tmp_path / "ledger", n=2)
    token = backend.claim(bad, "r-seed", 30.0)
    backend.save_task(token, TaskDetail("s0", RUNNING, attempts=1))
    backend.release(token)
    corrupt_task(backend_url, bad, "s0", backend=backend, garbage=DEEP)
    good = submit_steps(coord.start(), tmp_path / "ledger")
    assert coord.wait(good, timeout=20).state == SUCCESS
    until(lambda: backend.load_flow(bad).state == HELD, timeout=20, what="the flow held")
    assert "s0" in (backend.load_flow(bad).reason or "") and bad not in backend.find_runnable(100)
    out = run_cli(capsys, backend, "show", bad)
    assert bad_input(out) and "s0" in out.stderr


# ---------------------------------------------- held once, cluster-wide


def test_a_replica_holds_an_unreadable_flow_once_and_runs_the_others(
    backend_url: str, backend: Backend, capsys: pytest.CaptureFixture[str], local_replicas: LocalReplicas,
    tmp_path: Path,
) -> None:
    coord = local_replicas.add(backend)
    bad = submit_steps(coord, tmp_path / "ledger")
    corrupt_flow(backend_url, bad, backend=backend, garbage=DEEP)
    goods = [submit_steps(coord, tmp_path / "ledger") for _ in range(2)]
    coord.start()
    assert all(coord.wait(g, timeout=20).state == SUCCESS for g in goods)
    until(lambda: _state_or_none(backend, bad) == HELD, timeout=20, what="the placeholder written")

    held = backend.load_flow(bad)
    assert held.meta[CORRUPT_KEY]["raw"].startswith("[[[[") and "nests deeper" in (held.reason or "")
    assert bad not in backend.find_runnable(100)  # no replica claims it again, anywhere
    shown = run_cli(capsys, backend, "show", bad)
    assert shown.code == 0 and HELD in shown.stdout and "delete" in shown.stdout
    listed = run_cli(capsys, backend, "flows", "--state", "HELD")
    assert listed.code == 0 and bad in listed.stdout and listed.stderr == ""
    assert bad_input(run_cli(capsys, backend, "retry", bad, "--yes"))  # nothing to run: refused

    assert run_cli(capsys, backend, "delete", bad, "--force", "--yes").code == 0
    with pytest.raises(FlowNotFound):
        backend.load_flow(bad)


def _state_or_none(backend: Backend, flow_id: str) -> str | None:
    try:
        return backend.load_flow(flow_id).state
    except CorruptRecord:
        return None


# ------------------------------------------------------------ delete


def test_delete_is_forced_confirmed_and_dry_run_changes_nothing(
    backend_url: str, backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    good1, bad, good2 = _seed(backend)
    corrupt_flow(backend_url, bad, backend=backend, garbage=DEEP)

    refused = run_cli(capsys, backend, "delete", bad)
    assert bad_input(refused) and "--force" in refused.stderr
    dry = run_cli(capsys, backend, "delete", bad, "--dry-run")
    assert dry.code == 0 and "would delete" in dry.stdout and "unreadable" in dry.stdout
    assert bad_input(run_cli(capsys, backend, "delete", "no-such-flow", "--force", "--yes"))
    with pytest.raises(CorruptRecord):
        backend.load_flow(bad)  # still there, still as it was

    done = run_cli(capsys, backend, "delete", bad, "--force", "--yes")
    assert done.code == 0 and f"deleted flow {bad}" in done.stdout
    with pytest.raises(FlowNotFound):
        backend.load_flow(bad)
    assert [f.id for f in backend.list_flows()] == [good1, good2]


def test_delete_fences_a_live_owner(backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    from flowbaton.backends.errors import ClaimLost

    flow_id = store(backend, PENDING)
    owner = backend.claim(flow_id, "live-replica", 30.0)
    out = run_cli(capsys, backend, "delete", flow_id, "--force", "--yes")
    assert out.code == 0 and "fenced live-replica" in out.stdout
    with pytest.raises((ClaimLost, FlowNotFound)):
        backend.save_task(owner, TaskDetail("s0", RUNNING))


# ------------------------------------------------------------ claims


def test_an_unreadable_claim_is_replaced_by_release_and_cancel(
    shared_backend_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with open_backend(shared_backend_url) as backend:
        good, bad, other = _seed(backend)
        live = backend.claim(good, "r-live", 30.0)
        corrupt_claim(shared_backend_url, bad, garbage=DEEP)
        corrupt_claim(shared_backend_url, other)

        claims = run_cli(capsys, backend, "claims")
        assert claims.code == 0 and good in claims.stdout and "Traceback" not in claims.stderr
        assert run_cli(capsys, backend, "replicas").code == 0

        released = run_cli(capsys, backend, "release", bad, "--force", "--yes")
        assert released.code == 0 and f"released flow {bad}" in released.stdout, released
        assert backend.current_claim(bad) is None
        cancelled = run_cli(capsys, backend, "cancel", other, "--yes")
        assert cancelled.code == 0 and backend.load_flow(other).state == CANCELLED, cancelled
        backend.renew(live, 30.0)  # the other flow's claim was never touched


@pytest.fixture(params=backend_params(("sqlite", "redis")))
def leased_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The backends whose claims are leases (expire on their own)."""
    return make_url(request.param, request, tmp_path)


def test_an_unreadable_claim_does_not_block_its_flow_for_ever(leased_url: str) -> None:
    """A SQLite claim row whose expiry is text, a Redis claim key of garbage
    without TTL: nobody can hold such a claim (no token matches it), so
    replicas find the flow and claim it like an expired one."""
    with open_backend(leased_url) as backend:
        _, bad, _ = _seed(backend)
        corrupt_claim(leased_url, bad)
        assert bad in backend.find_runnable(10)
        token = backend.claim(bad, "r1", 30.0)
        claim = backend.current_claim(bad)
        assert claim is not None and claim.claim_id == token.claim_id


# ---------------------------------------------------------- replicas


@pytest.mark.parametrize("garbage", [
    '{"replica_id": "evil", "host": "h", "pid": 1, "started_at": 1, "version": "1", "allow": [1, {"a": 2}]}',
    '{"replica_id": "evil", "host": "h", "pid": true, "started_at": 1, "version": "1"}',
    '{"replica_id": "evil", "host": "h", "pid": 1, "started_at": "now", "version": "1"}',
    DEEP,
], ids=["allow-elements", "bool-pid", "text-time", "deep"])
def test_a_corrupt_replica_record_does_not_hide_the_others(
    backend_url: str, backend: Backend, capsys: pytest.CaptureFixture[str], garbage: str
) -> None:
    present(backend, "good-replica", ["tests."])
    corrupt_replica(backend_url, "evil", backend=backend, garbage=garbage)
    out = run_cli(capsys, backend, "replicas")
    assert out.code == 0 and "good-replica" in out.stdout and _warned(out, "evil"), out
    assert [r["replica_id"] for r in run_cli(capsys, backend, "replicas", "--json").json()["replicas"]] == [
        "good-replica"]
    flow_id = store(backend, PENDING)
    stranded = run_cli(capsys, backend, "flows", "--stranded")
    assert stranded.code == 0 and "Traceback" not in stranded.stderr
    assert run_cli(capsys, backend, "claims").code == 0
    assert flow_id


# ------------------------------------------------------------ fuzzing

EXAMPLES = 500
_counted: dict[str, int] = {}

_scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(10**400), max_value=10**400)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
_FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])

_VALID = {
    FlowDetail: json.loads(FlowDetail("f", "n", "m:f", created_at=1.0, updated_at=2.0).to_json()),
    TaskDetail: json.loads(TaskDetail("t", SUCCESS, {"r": 1}, None, "1.0", 1, 1.0, 2.0, "r", "r#1", 1,
                                      {"first_started": 1.0}).to_json()),
    ReplicaInfo: json.loads(ReplicaInfo("r", "h", 1, 1.0, "0.1", ["tests."]).to_json()),
    Decline: json.loads(Decline("r", "why", 1.0).to_json()),
    ClaimInfo: {"claim_id": "r#1", "epoch": 3, "claimed_at": 1.0},
}
_META = ["meta.takeovers", "meta.tasks", "meta.unmatched", "meta.version_decisions", "meta.first_started",
         "meta.history", "meta.revert", "meta.claims"]


def _decode(kind: type, raw: str | bytes) -> Any:
    """Decode with ``kind``; the only error allowed is CorruptRecord. What
    decodes must be writable again (no NaN, no bool-for-int left in it)."""
    _counted[kind.__name__] = _counted.get(kind.__name__, 0) + 1
    try:
        if kind is ClaimInfo:
            info = ClaimInfo.from_json(raw, "fuzz", flow_id="f")
            assert isinstance(info.epoch, int) and not isinstance(info.epoch, bool)
            dumps(info.to_dict())
            return info
        record = kind.from_json(raw, "fuzz")  # type: ignore[attr-defined]
    except CorruptRecord as err:
        assert err.where == "fuzz"
        return None
    record.to_json()
    return record


def _mutated(kind: type, path: str, value: Any) -> str:
    record = json.loads(json.dumps(_VALID[kind]))
    target, name = record, path
    if path.startswith("meta."):
        target, name = record.setdefault("meta", {}), path[5:]
    target[name] = value
    return json.dumps(record)


_KINDS = st.sampled_from(list(_VALID))


@_FUZZ
@given(kind=_KINDS, value=_json)
def test_fuzz_any_json_value_decodes_or_is_corrupt(kind: type, value: Any) -> None:
    _decode(kind, json.dumps(value))


@_FUZZ
@given(kind=_KINDS, data=st.data())
def test_fuzz_one_field_replaced_decodes_or_is_corrupt(kind: type, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from([*_VALID[kind], *_META, "extra"]))
    _decode(kind, _mutated(kind, path, data.draw(_json)))


@_FUZZ
@given(kind=_KINDS, raw=st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_any_bytes_decode_or_are_corrupt(kind: type, raw: bytes | str) -> None:
    _decode(kind, raw)


@_FUZZ
@given(kind=_KINDS, depth=st.integers(1, 3_000), opener=st.sampled_from(["[", '{"a":', '[{"a":']),
       field=st.booleans())
def test_fuzz_deep_nesting_is_corrupt_past_the_limit(kind: type, depth: int, opener: str, field: bool) -> None:
    closer = {"[": "]", '{"a":': "}", '[{"a":': "}]"}[opener]
    value = opener * depth + "1" + closer * depth
    raw = _mutated(kind, next(iter(_VALID[kind])), None).replace("null", value, 1) if field else value
    decoded = _decode(kind, raw)
    levels = depth * (2 if opener == '[{"a":' else 1) + (1 if field else 0)
    if levels > MAX_DEPTH:
        assert decoded is None


@_FUZZ
@given(row=st.tuples(*[_scalars | st.binary(max_size=4)] * 5))
def test_fuzz_sqlite_claim_rows_decode_or_are_corrupt(row: tuple[Any, ...]) -> None:
    _counted["claim row"] = _counted.get("claim row", 0) + 1
    try:
        info = ClaimInfo.from_row(row, "fuzz")
    except CorruptRecord:
        return
    dumps(info.to_dict())


def test_fuzz_report_examples_tried() -> None:
    """Runs last in this module: how many inputs the properties above tried."""
    total = sum(_counted.values())
    print(f"\nhypothesis examples tried by record decoders: {total} {dict(sorted(_counted.items()))}")
    if _counted:  # not when a single test was selected
        assert total >= EXAMPLES
