"""Contract: a damaged record is named, never hides the others."""

from __future__ import annotations

import logging

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.errors import CorruptRecord
from flowbaton.backends.records import ReplicaInfo

from .corrupt import corrupt_claim, corrupt_flow, corrupt_replica, corrupt_task, plant_undecodable_task
from .helpers import LEASE, make_flow, make_task

GARBAGE = [
    "{not json", "[1, 2]", '{"id": "x"}', '{"state": "NO_SUCH_STATE"}',
    "[" * 100_000 + "]" * 100_000,  # RecursionError in json.loads, unless bounded first
    '{"id": "bad-flow", "state": "PENDING", "created_at": NaN}',
]


def _seed(backend: Backend) -> None:
    for flow_id in ("good-1", "bad-flow", "good-2"):
        backend.create_flow(make_flow(flow_id))
    token = backend.claim("bad-flow", "r1", LEASE)
    backend.save_task(token, make_task("good-task"))
    backend.save_task(token, make_task("bad/task ✓"))
    backend.release(token)  # unclaimed, so discovery meets the damaged record too


@pytest.mark.parametrize("garbage", GARBAGE)
def test_corrupt_flow_is_named_on_load(backend_url: str, backend: Backend, garbage: str) -> None:
    _seed(backend)
    corrupt_flow(backend_url, "bad-flow", backend=backend, garbage=garbage)
    with pytest.raises(CorruptRecord) as caught:
        backend.load_flow("bad-flow")
    assert "bad-flow" in str(caught.value)


def test_list_flows_skips_corrupt_flow_with_warning(
    backend_url: str, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    _seed(backend)
    corrupt_flow(backend_url, "bad-flow", backend=backend)
    with caplog.at_level(logging.WARNING, logger="flowbaton"):
        flows = backend.list_flows()
    assert [f.id for f in flows] == ["good-1", "good-2"]
    assert any("bad-flow" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert [f.id for f in backend.list_flows(states={"PENDING"})] == ["good-1", "good-2"]


def test_corrupt_flow_does_not_block_discovery(backend_url: str, backend: Backend) -> None:
    _seed(backend)
    corrupt_flow(backend_url, "bad-flow", backend=backend)
    found = backend.find_runnable(10)
    assert found[:1] == ["good-1"] and "good-2" in found


@pytest.mark.parametrize("garbage", GARBAGE)
def test_corrupt_task_is_named_on_load(backend_url: str, backend: Backend, garbage: str) -> None:
    _seed(backend)
    corrupt_task(backend_url, "bad-flow", "bad/task ✓", backend=backend, garbage=garbage)
    with pytest.raises(CorruptRecord) as caught:
        backend.load_tasks("bad-flow")
    assert "bad-flow" in str(caught.value)
    assert "bad/task ✓" in str(caught.value)
    assert backend.load_flow("bad-flow").id == "bad-flow"


def test_corrupt_task_can_be_overwritten_by_its_owner(backend_url: str, backend: Backend) -> None:
    """The runner repairs a damaged detail by saving it again."""
    _seed(backend)
    corrupt_task(backend_url, "bad-flow", "bad/task ✓", backend=backend)
    token = backend.claim("bad-flow", "r2", LEASE)
    backend.save_task(token, make_task("bad/task ✓", attempts=2))
    assert backend.load_tasks("bad-flow")["bad/task ✓"].attempts == 2


def test_list_replicas_skips_a_corrupt_record_with_warning(
    backend_url: str, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.register_replica(ReplicaInfo("good", "h", 1, 1.0, "1"), LEASE)
    corrupt_replica(backend_url, "evil", backend=backend,
                    garbage='{"replica_id": "evil", "host": "h", "pid": 1, "started_at": 1, '
                            '"version": "1", "allow": [1]}')
    with caplog.at_level(logging.WARNING, logger="flowbaton"):
        assert [r.replica_id for r in backend.list_replicas()] == ["good"]
    assert any("evil" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_a_forced_claim_replaces_an_unreadable_claim(shared_backend_url: str) -> None:
    from flowbaton.backends import open_backend

    with open_backend(shared_backend_url) as backend:
        _seed(backend)
        corrupt_claim(shared_backend_url, "bad-flow")
        assert all(c.flow_id != "bad-flow" for c in backend.list_claims())  # skipped, not raised
        token = backend.claim("bad-flow", "operator", LEASE, force=True)
        claim = backend.current_claim("bad-flow")
        assert claim is not None and claim.claim_id == token.claim_id
        backend.release(token)
        assert backend.current_claim("bad-flow") is None


def test_a_task_under_an_undecodable_name_is_corrupt(shared_backend_url: str) -> None:
    """A key or znode name that is not UTF-8 (planted by hand) is named as
    CorruptRecord, not a UnicodeDecodeError (or, on SQLite, an error for the
    whole query reported as BackendUnavailable), and discovery goes on."""
    from flowbaton.backends import open_backend

    with open_backend(shared_backend_url) as backend:
        _seed(backend)
        plant_undecodable_task(shared_backend_url, "bad-flow", make_task("good-task").to_json())
        with pytest.raises(CorruptRecord) as caught:
            backend.load_tasks("bad-flow")
        assert "bad-flow" in str(caught.value)
        assert {"good-1", "bad-flow", "good-2"} <= set(backend.find_runnable(10))
        assert [f.id for f in backend.list_flows()] == ["good-1", "bad-flow", "good-2"]


def test_load_runs_leaves_out_a_corrupt_flow_and_reads_the_others(backend_url: str, backend: Backend) -> None:
    """A damaged record in a batch costs that flow its batched read only: its
    worker reads it alone and meets the ``CorruptRecord`` where it is handled."""
    _seed(backend)
    corrupt_task(backend_url, "bad-flow", "bad/task ✓", backend=backend)
    corrupt_flow(backend_url, "good-2", backend=backend)
    found = backend.load_runs(["good-1", "bad-flow", "good-2"])
    assert "bad-flow" not in found and "good-2" not in found
    assert set(found) <= {"good-1"}
    if type(backend).load_runs is not Backend.load_runs:  # drivers that batch
        assert found["good-1"].flow == backend.load_flow("good-1")
