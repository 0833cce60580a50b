"""Small helpers the engine tests share."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from flowbaton.backends import Backend, ClaimToken, FlowDetail, TaskDetail
from flowbaton.backends.states import RUNNING, SUCCESS
from flowbaton.engine import Claim, FlowReport, Gate, new_flow_detail, run_flow


def submit(backend: Backend, factory: str, **kw: Any) -> FlowDetail:
    detail = new_flow_detail(factory, **kw)
    backend.create_flow(detail)
    return detail


def claim_of(token: ClaimToken, gate: Gate | None = None) -> Claim[Gate]:
    """A claim as a caller without a lease keeper holds it: a plain gate
    (open until the test closes it), asked for now."""
    return Claim(token, gate or Gate(), time.monotonic())


def run_once(backend: Backend, flow_id: str, replica: str = "r1", gate: Gate | None = None, **kw: Any) -> FlowReport:
    """Claim the flow, run it under ``gate`` (a plain one unless given), release."""
    token = backend.claim(flow_id, replica, 30.0)
    try:
        return run_flow(backend, claim_of(token, gate), replica_id=replica, **kw)
    finally:
        release_quietly(backend, token)


def release_quietly(backend: Backend, token: ClaimToken) -> None:
    from flowbaton.backends.errors import ClaimLost

    with contextlib.suppress(ClaimLost):
        backend.release(token)


def fake_crash(backend: Backend, flow_id: str, done: dict[str, Any], running: str | None,
               version: str = "1.0") -> None:
    """Store what a dead owner left behind: ``done`` tasks SUCCESS with those
    results, ``running`` in flight, the flow RUNNING and still owned."""
    token = backend.claim(flow_id, "dead", 30.0)
    for tid, result in done.items():
        backend.save_task(token, TaskDetail(tid, SUCCESS, result, version=version, attempts=1,
                                            epoch=token.epoch))
    if running:
        backend.save_task(token, TaskDetail(running, RUNNING, version=version, attempts=1, epoch=token.epoch,
                                            started_at=time.time(), owner="dead"))
    flow = backend.load_flow(flow_id)
    flow.state, flow.owner, flow.epoch = RUNNING, "dead", token.epoch
    flow.meta["tasks"] = ["a", "b", "c"]
    backend.save_flow(token, flow)
    backend.release(token)
