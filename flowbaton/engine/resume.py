"""Match a rebuilt flow against its stored task details (the resume rules).

Pure: from today's compiled flow, the flow record and the stored details it
decides what is reused, what runs, what is in doubt, what is unmatched, and
how each major version change is handled. The runner acts on the result;
``flowbaton plan`` prints it without acting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..backends.records import FlowDetail, TaskDetail
from ..backends.states import (
    FAILURE,
    REVERT_FAILURE,
    REVERTED,
    REVERTING,
    RUNNING,
    SUCCESS,
)
from .codec import decode, encode
from .compiler import CompiledFlow
from .meta import DECISIONS, FlowMeta
from .task import Task, major_of

__all__ = ["ResumePlan", "plan_resume", "DECISIONS_KEY"]

#: The flow.meta key of an operator's version choices (``meta.DECISIONS``),
#: under its older name for the code that still imports it from here.
DECISIONS_KEY = DECISIONS


@dataclass
class ResumePlan:
    reuse: set[str] = field(default_factory=set)  # SUCCESS, result feeds downstream
    rewrite: dict[str, TaskDetail] = field(default_factory=dict)  # reused with new version/result
    run: list[str] = field(default_factory=list)  # will run (PENDING or policy rerun)
    in_doubt: set[str] = field(default_factory=set)  # stored RUNNING: owner died mid-task
    failed: set[str] = field(default_factory=set)  # stored final FAILURE
    reverting: set[str] = field(default_factory=set)  # stored REVERTING: undo in doubt
    reverted: set[str] = field(default_factory=set)
    revert_failed: set[str] = field(default_factory=set)
    added: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    version_changes: list[dict[str, Any]] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # reasons the flow must be held

    def diff(self) -> dict[str, Any]:
        """What changed between the stored and the rebuilt flow."""
        return {
            "added": list(self.added),
            "unmatched": list(self.unmatched),
            "version_changed": list(self.version_changes),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.diff(),
            "reuse": sorted(self.reuse | set(self.rewrite)),
            "run": list(self.run),
            "in_doubt": sorted(self.in_doubt),
            "failed": sorted(self.failed),
            "held": list(self.held),
        }


def plan_resume(compiled: CompiledFlow, flow: FlowDetail, details: dict[str, TaskDetail]) -> ResumePlan:
    plan = ResumePlan()
    meta = FlowMeta(flow.meta)
    previous = meta.tasks
    known = set(previous) if previous is not None else None
    decisions = meta.decisions  # an operator's rerun/reuse per task id or "*"
    for tid in compiled.order:
        detail = details.get(tid)
        if known is not None and tid not in known and detail is None:
            plan.added.append(tid)
        _place(plan, compiled.tasks[tid], detail, decisions)
    plan.unmatched = sorted(set(details) - set(compiled.tasks))
    return plan


def _place(plan: ResumePlan, task: Task, detail: TaskDetail | None, decisions: dict[str, str]) -> None:
    tid = task.task_id
    state = detail.state if detail else None
    if detail is not None and state == SUCCESS:
        _place_success(plan, task, detail, decisions)
    elif state == RUNNING:
        plan.in_doubt.add(tid)
        plan.run.append(tid)
    elif state in _SETS:
        getattr(plan, _SETS[state]).add(tid)
    else:
        plan.run.append(tid)


_SETS = {
    FAILURE: "failed",
    REVERTING: "reverting",
    REVERTED: "reverted",
    REVERT_FAILURE: "revert_failed",
}


def _place_success(plan: ResumePlan, task: Task, detail: TaskDetail, decisions: dict[str, str]) -> None:
    tid = task.task_id
    if major_of(detail.version) == major_of(task.task_version):
        plan.reuse.add(tid)
        return
    policy: Any = decisions.get(tid) or decisions.get("*") or task.task_policy
    name = policy if isinstance(policy, str) else "migrate"
    plan.version_changes.append(
        {"task": tid, "stored": detail.version, "current": task.task_version, "policy": name}
    )
    if policy == "rerun":
        plan.run.append(tid)
    elif policy == "reuse":
        plan.rewrite[tid] = _renewed(detail, task, detail.result)
    elif policy == "fail":
        plan.held.append(
            f"task {tid!r} changed major version {detail.version} -> {task.task_version} and its "
            "policy is 'fail'; choose with `flowbaton retry FLOW_ID --rerun` or `--reuse`"
        )
    else:
        migrated = policy(decode(detail.result))
        plan.rewrite[tid] = _renewed(detail, task, encode(migrated, f"task {tid!r} migrated result"))


def _renewed(detail: TaskDetail, task: Task, result: Any) -> TaskDetail:
    meta = {**detail.meta, "migrated_from": detail.version}
    return replace(detail, state=SUCCESS, result=result, failure=None, version=task.task_version, meta=meta)
