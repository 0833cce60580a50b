"""Contract: a replica's mailbox of handover requests (``release`` without
``--force``, ``drain``): filed, replaced, read in one call, cleared, bounded;
a request planted by hand that names another replica or flow is never read."""

from __future__ import annotations

import pytest

from flowbaton.backends import Backend
from flowbaton.backends import base as backend_base
from flowbaton.backends.errors import MailboxFull
from flowbaton.backends.records import Handover

from .corrupt import plant_handover
from .helpers import second_backend


def _ask(replica_id: str, flow_id: str | None, epoch: int = 3, at: float = 1.0) -> Handover:
    return Handover(replica_id, flow_id, epoch, started_at=1700000000.5, by="alice@ops-1", at=at)


def test_requests_are_filed_per_replica_and_replaced(backend_url: str, backend: Backend) -> None:
    assert backend.load_handovers("r1") == []
    backend.request_handover(_ask("r1", "f1"))
    backend.request_handover(_ask("r1", None, epoch=0))
    backend.request_handover(_ask("r2", "f2"))
    backend.request_handover(_ask("r1", "f1", epoch=4, at=2.0))  # the same flow again: replaces
    with second_backend(backend_url, backend) as other:
        mine = sorted(other.load_handovers("r1"), key=lambda h: h.flow_id or "")
    assert mine == [_ask("r1", None, epoch=0), _ask("r1", "f1", epoch=4, at=2.0)]
    assert mine[0].drain and not mine[1].drain
    assert backend.load_handovers("r2") == [_ask("r2", "f2")]


def test_clear_removes_one_request(backend: Backend) -> None:
    backend.request_handover(_ask("r1", "f1"))
    backend.request_handover(_ask("r1", None, epoch=0))
    backend.clear_handover("r1", None)
    assert backend.load_handovers("r1") == [_ask("r1", "f1")]
    backend.clear_handover("r1", "f1")
    backend.clear_handover("r1", "f1")  # nothing left: no error
    backend.clear_handover("nobody", None)
    assert backend.load_handovers("r1") == []


def test_ids_of_any_shape(backend: Backend) -> None:
    odd = "r/1 {x}%✓"
    backend.request_handover(_ask(odd, "flow.1-x_y"))
    assert backend.load_handovers(odd) == [_ask(odd, "flow.1-x_y")]
    assert backend.load_handovers("r") == []


def test_mailbox_is_bounded(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bound is read where each driver uses it: lower it for the test
    # (filing 10,000 requests would only cost time).
    import importlib

    for module in ("flowbaton.backends.base", "flowbaton.backends.memory", "flowbaton.backends.sqlite",
                   "flowbaton.backends.redis.driver", "flowbaton.backends.zookeeper.driver"):
        monkeypatch.setattr(importlib.import_module(module), "MAX_HANDOVERS", 3)
    assert backend_base.MAX_HANDOVERS == 3
    for flow_id in ("a", "b", "c"):
        backend.request_handover(_ask("r1", flow_id))
    with pytest.raises(MailboxFull, match="r1"):
        backend.request_handover(_ask("r1", "d"))
    backend.request_handover(_ask("r1", "c", epoch=9))  # a replacement always fits
    backend.request_handover(_ask("r2", "d"))  # another replica's mailbox has room
    assert {h.flow_id for h in backend.load_handovers("r1")} == {"a", "b", "c"}


@pytest.mark.parametrize("garbage", ["{not json", '{"replica_id": "r1"}', "[" * 50_000 + "]" * 50_000])
def test_a_damaged_request_is_skipped(backend_url: str, backend: Backend, garbage: str,
                                      caplog: pytest.LogCaptureFixture) -> None:
    backend.request_handover(_ask("r1", "good"))
    plant_handover(backend_url, "r1", "bad", garbage, backend=backend)
    assert backend.load_handovers("r1") == [_ask("r1", "good")]
    assert "handover" in caplog.text


def test_a_request_filed_under_another_name_is_refused(backend_url: str, backend: Backend) -> None:
    """An intruder (or a bad copy) files a request about flow "x" for
    replica r2 in r1's mailbox, or under flow "y": r1 must not act on it."""
    plant_handover(backend_url, "r1", "x", _ask("r2", "x").to_json(), backend=backend)
    plant_handover(backend_url, "r1", "y", _ask("r1", "x").to_json(), backend=backend)
    plant_handover(backend_url, "r1", "", _ask("r1", "x").to_json(), backend=backend)
    assert backend.load_handovers("r1") == []
