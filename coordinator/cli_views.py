"""What the CLI prints: the documented JSON shapes, and the same as tables.

Views are pure functions of records, so they are easy to test and the JSON
shapes live in one place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..backends.records import ClaimInfo, Decline, FlowDetail, ReplicaInfo, TaskDetail
from ..backends.states import RUNNABLE_FLOW_STATES

__all__ = [
    "flow_row",
    "claim_row",
    "show_doc",
    "render_json",
    "render_flows",
    "render_claims",
    "render_show",
    "stranded",
]

JSON = Any


def render_json(doc: JSON) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)


# ------------------------------------------------------------------ shapes


def flow_row(flow: FlowDetail, owner: str | None) -> dict[str, JSON]:
    return {
        "id": flow.id,
        "name": flow.name,
        "state": flow.state,
        "factory": flow.factory,
        "owner": owner,
        "created_at": flow.created_at,
        "updated_at": flow.updated_at,
    }


def claim_row(claim: ClaimInfo) -> dict[str, JSON]:
    return claim.to_dict()


def task_row(task_id: str, detail: TaskDetail | None) -> dict[str, JSON]:
    if detail is None:  # in the flow, never started
        return {"id": task_id, "state": "PENDING", "version": None, "attempts": 0,
                "result": None, "failure": None, "owner": None}
    return {
        "id": task_id,
        "state": detail.state,
        "version": detail.version,
        "attempts": detail.attempts,
        "result": detail.result,
        "failure": detail.failure,
        "owner": detail.owner,
    }


def _task_order(flow: FlowDetail, tasks: Mapping[str, TaskDetail]) -> list[str]:
    """The flow's own order (stored by the engine at the last run), then any
    stored task it no longer has."""
    known = [str(t) for t in flow.meta.get("tasks", [])]
    return known + sorted(t for t in tasks if t not in known)


def show_doc(
    flow: FlowDetail,
    tasks: Mapping[str, TaskDetail],
    owner: str | None,
    declines: Sequence[Decline],
) -> dict[str, JSON]:
    """The documented ``show`` object, plus ``reason`` (why HELD or failed)
    and ``declines`` (which replica refused the flow, and why)."""
    return {
        "id": flow.id,
        "name": flow.name,
        "state": flow.state,
        "factory": flow.factory,
        "args": flow.args,
        "kwargs": flow.kwargs,
        "inputs": flow.inputs,
        "owner": owner,
        "tasks": [task_row(t, tasks.get(t)) for t in _task_order(flow, tasks)],
        "unmatched": [str(u) for u in flow.meta.get("unmatched", [])],
        "reason": flow.reason,
        "declines": [{"replica_id": d.replica_id, "reason": d.reason, "at": d.at} for d in declines],
    }


def stranded(doc: Mapping[str, JSON], replicas: Sequence[ReplicaInfo]) -> bool:
    """Runnable, unowned, and every live replica declined it: nobody will
    run it until a replica with its code joins."""
    declined = {d["replica_id"] for d in doc["declines"]}
    live = {r.replica_id for r in replicas}
    runnable = doc["state"] in RUNNABLE_FLOW_STATES and doc["owner"] is None
    return bool(runnable and declined and live <= declined)


# ------------------------------------------------------------------ tables


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _short(value: JSON, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last one is not padded."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def render_flows(rows: Sequence[Mapping[str, JSON]]) -> str:
    if not rows:
        return "no flows"
    cells = [[r["id"], r["state"], _short(r["name"], 30), r["factory"], r["owner"] or "-",
              _when(r["updated_at"])] for r in rows]
    return table(["ID", "STATE", "NAME", "FACTORY", "OWNER", "UPDATED"], cells)


def render_claims(rows: Sequence[Mapping[str, JSON]], now: float) -> str:
    if not rows:
        return "no claims"
    cells = [[r["flow_id"], r["owner"], str(r["epoch"]), _when(r["claimed_at"]), _expires(r["expires_at"], now)]
             for r in rows]
    return table(["FLOW", "OWNER", "EPOCH", "CLAIMED", "EXPIRES"], cells)


def _expires(at: float | None, now: float) -> str:
    return "with session" if at is None else f"in {at - now:.1f}s"


def render_show(doc: Mapping[str, JSON], is_stranded: bool) -> str:
    lines = [
        f"flow      {doc['id']}  ({doc['name']})",
        f"state     {doc['state']}" + (f": {doc['reason']}" if doc["reason"] else ""),
        f"factory   {doc['factory']}  args={_short(doc['args'])}  kwargs={_short(doc['kwargs'])}",
        f"inputs    {_short(doc['inputs'], 80)}",
        f"owner     {doc['owner'] or '-'}",
    ]
    lines += [f"declined  by {d['replica_id']} at {_when(d['at'])}: {d['reason']}" for d in doc["declines"]]
    if is_stranded:
        lines.append("STRANDED  no live owner, and every live replica declined it: "
                     "start a replica that can import its factory")
    cells = [[t["id"], t["state"], t["version"] or "-", str(t["attempts"]), t["owner"] or "-",
              _short(t["failure"]["message"] if t["failure"] else t["result"])] for t in doc["tasks"]]
    lines += ["", table(["TASK", "STATE", "VERSION", "ATTEMPTS", "OWNER", "RESULT / FAILURE"], cells)
              if cells else "no tasks"]
    if doc["unmatched"]:
        lines.append("unmatched (stored, no longer in the flow): " + ", ".join(doc["unmatched"]))
    return "\n".join(lines)
