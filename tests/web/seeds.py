"""Stored flows for the web view's tests, written the way a replica writes.

``HOSTILE`` is what someone with write access to the store might put in any
string a page shows: markup that would run if a page printed it raw.
"""

from __future__ import annotations

import time

from flowbaton.backends.base import Backend
from flowbaton.backends.records import Decline, FlowDetail, TaskDetail
from tests.coordinator.ops_helpers import STEPS, present, store, task

__all__ = ["HOSTILE", "RAW_MARKUP", "hostile_flow", "many_flows"]

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
#: What must never reach a page unescaped.
RAW_MARKUP = ("<script>window", "<img src=x")


def hostile_flow(backend: Backend) -> str:
    """A FAILURE flow with ``HOSTILE`` in every string a page shows: name,
    factory, reason, a task id, a result, a failure's type, message and
    traceback, an earlier attempt, a decline, the resume and operator
    history, the claim history; a live replica and a live claim named by it."""
    now = time.time()
    earlier = {"history": [{"attempt": 1, "started_at": now - 9, "finished_at": None, "outcome": HOSTILE,
                            "owner": HOSTILE, "epoch": 1, "error": HOSTILE}, "not an object"]}
    failure = {"type": HOSTILE, "message": HOSTILE, "traceback": f"Traceback (most recent call last):\n  {HOSTILE}"}
    tasks = [task("s0", "SUCCESS", result={"note": HOSTILE}),
             TaskDetail("s1", "FAILURE", None, failure, "1.0", 2, now - 5, now - 4, HOSTILE, "c#1", 2, earlier),
             task(HOSTILE, "SUCCESS", result=HOSTILE)]
    meta = {"resumes": [{"at": now - 6, "owner": HOSTILE, "epoch": 2, "takeover": True, "previous_owner": HOSTILE,
                         "added": [HOSTILE]}],
            "operations": [{"at": now - 3, "action": HOSTILE, "by": HOSTILE, "epoch": 3, "fenced": HOSTILE}],
            "claims": [{"epoch": 1, "owner": HOSTILE, "claimed_at": now - 10, "ended_at": None, "ended": "expired"},
                       {"epoch": 2, "owner": "r2", "claimed_at": now - 6, "ended_at": now - 4, "ended": HOSTILE}]}
    flow_id = store(backend, "FAILURE", tasks=tasks, meta=meta, name=HOSTILE, factory=f"tests.{HOSTILE}:f")
    _set_reason(backend, flow_id, HOSTILE)
    backend.record_decline(flow_id, Decline(HOSTILE, HOSTILE, now))
    present(backend, HOSTILE, ["tests."], host=HOSTILE)
    backend.claim(flow_id, HOSTILE, 120.0)  # a live claim of the hostile replica, left held
    return flow_id


def _set_reason(backend: Backend, flow_id: str, reason: str) -> None:
    token = backend.claim(flow_id, "seeder", 30.0)
    flow = backend.load_flow(flow_id)
    flow.reason = reason
    backend.save_flow(token, flow)
    backend.release(token)


def many_flows(backend: Backend, count: int) -> list[str]:
    """``count`` finished flows, ids ``flow-00000`` on, one insert each
    (about 0.1 ms apiece on SQLite: no claim, no tasks)."""
    now = time.time()
    ids = [f"flow-{i:05d}" for i in range(count)]
    for i, flow_id in enumerate(ids):
        backend.create_flow(FlowDetail(id=flow_id, name=f"steps-{i % 7}", factory=STEPS, state="SUCCESS",
                                       created_at=now - count + i, updated_at=now - count + i))
    return ids
