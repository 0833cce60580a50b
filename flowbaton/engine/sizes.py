"""Keep every record the engine writes within the backend's ``max_record_bytes``.

A result too large to store fails its task, through the task's retry
policy, *before* anything is written: a refused SUCCESS write would leave
the task RUNNING, and every later claim would run it again (docs/security.md,
"Limits"). Text the engine adds itself (failure messages and tracebacks,
resume and claim history, earlier attempts, the task list, a failure
reason) is trimmed, least useful first, when a record would not fit
otherwise. A new flow takes at most half
the limit (``backends.limits.check_new_flow``), so after trimming its
record always fits; one that still does not (stored under a larger limit)
raises ``FlowTooLarge``, which replicas decline with that reason instead of
crashing on it.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from ..backends.errors import ResultTooLarge
from ..backends.limits import FlowTooLarge, too_large
from ..backends.records import FlowDetail, TaskDetail
from ..backends.states import SUCCESS
from .attempts import HISTORY
from .meta import CLAIMS, DIFF, RESUMES, UNMATCHED, FlowMeta

__all__ = ["record_size", "succeeded", "fit_task", "fit_flow", "REVERT_RESERVE"]

log = logging.getLogger("flowbaton.engine")

#: Bytes a SUCCESS record leaves free for what its revert adds later (state,
#: times, a trimmed revert failure), so that undoing it can be stored too.
REVERT_RESERVE = 2048
_TEXT_STEPS = (16_384, 2_048, 256)  # longest string kept in failure texts, step by step
_FAILURE_KEYS = ("last_failure", "revert_failure")  # task meta that holds failure texts
_REASON_CHARS = 2_000
_LIST_ITEMS = 20


def record_size(record: FlowDetail | TaskDetail) -> int:
    """Bytes the backend measures: UTF-8 of the record's JSON."""
    return len(record.to_json().encode("utf-8"))


def succeeded(detail: TaskDetail, stored: Any, finished: float, limit: int, flow_id: str) -> TaskDetail:
    """The SUCCESS record of ``detail`` with result ``stored``, or
    ``ResultTooLarge`` naming the task, the size and the limit."""
    done = replace(detail, state=SUCCESS, result=stored, finished_at=finished)
    room = limit - min(REVERT_RESERVE, limit // 4)
    done = fit_task(done, room)
    size = record_size(done)
    if size > room:
        raise ResultTooLarge(
            f"task {detail.task_id!r}: its result makes a record of {size:,} bytes, over the limit of "
            f"{room:,} bytes (max_record_bytes {limit:,}, less {limit - room:,} kept for a revert) "
            f"in flow {flow_id!r}; store large results elsewhere and return a reference"
        )
    return done


def fit_task(detail: TaskDetail, limit: int) -> TaskDetail:
    """``detail`` with its failure texts shortened until it fits ``limit``,
    then without its earlier attempts (unchanged when it fits, or holds
    nothing of the engine's to shorten)."""
    if detail.failure is None and not any(key in detail.meta for key in (*_FAILURE_KEYS, HISTORY)):
        return detail
    fitted = detail
    for chars in _TEXT_STEPS:
        if record_size(fitted) <= limit:
            return fitted
        fitted = replace(detail, failure=_clip(detail.failure, chars), meta=_clip(detail.meta, chars))
    if record_size(fitted) > limit and HISTORY in fitted.meta:
        fitted = replace(fitted, meta={k: v for k, v in fitted.meta.items() if k != HISTORY})
    return fitted


def fit_flow(flow: FlowDetail, limit: int) -> None:
    """Trim what the engine keeps in ``flow`` (in place) until the record
    fits ``limit``; ``FlowTooLarge`` when its own data alone does not."""
    before = record_size(flow)
    if before <= limit:
        return
    for trim in (_last_resume_only, _short_reason, _short_lists, _no_history, _no_task_list):
        trim(flow)
        size = record_size(flow)
        if size <= limit:
            log.warning("flow %s: record of %d bytes trimmed to %d to fit max_record_bytes %d",
                        flow.id, before, size, limit, extra={"flow_id": flow.id})
            return
    raise FlowTooLarge(
        too_large(f"flow {flow.id!r}", size, limit)
        + " even without the engine's history: its arguments and inputs are too large for this "
        "backend; raise max_record_bytes, or cancel the flow and submit it with smaller data"
    )


def _clip(value: Any, chars: int) -> Any:
    """``value`` with every string longer than ``chars`` cut, saying so."""
    if isinstance(value, str) and len(value) > chars:
        return f"{value[:chars]}... [{len(value) - chars:,} characters cut to fit max_record_bytes]"
    if isinstance(value, dict):
        return {key: _clip(item, chars) for key, item in value.items()}
    if isinstance(value, list):
        return [_clip(item, chars) for item in value]
    return value


def _last_resume_only(flow: FlowDetail) -> None:
    """The newest resume and claim only (the open claim's end is written later)."""
    for key in (RESUMES, CLAIMS):
        entries = flow.meta.get(key)
        if isinstance(entries, list):
            flow.meta[key] = entries[-1:]


def _short_reason(flow: FlowDetail) -> None:
    if flow.reason is not None:
        flow.reason = _clip(flow.reason, _REASON_CHARS)


def _short_lists(flow: FlowDetail) -> None:
    """Lists of task ids (unmatched, diffs, the last resume's) cut to their first few."""
    for key in (UNMATCHED, DIFF, RESUMES):
        if key in flow.meta:
            flow.meta[key] = _cap(flow.meta[key])


def _cap(value: Any) -> Any:
    if isinstance(value, list):
        return [_cap(item) for item in value[:_LIST_ITEMS]]
    if isinstance(value, dict):
        return {key: _cap(item) for key, item in value.items()}
    return value


def _no_history(flow: FlowDetail) -> None:
    for key in (RESUMES, DIFF, CLAIMS):
        flow.meta.pop(key, None)


def _no_task_list(flow: FlowDetail) -> None:
    """Last resort: the stored order is only used to show tasks in order and
    to name tasks added since; each reader copes without it."""
    flow.meta = FlowMeta(flow.meta).without_build().to_dict()
