"""Each task's last few attempts, kept in its own record.

The latest attempt of a task *is* its detail (``attempts``, ``started_at``,
``finished_at``, ``owner``, ``epoch``, ``state``); what happened before is
in ``meta["history"]``, oldest first. An earlier attempt is added when the
next one starts, in the write that records that start, so the history costs
no round trip and no bytes at all for a task that ran once: an operator
looking at a takeover sees who ran the task first, until when, and why it
ran again, from the records alone (``ops.timeline``).

Bounded: ``ATTEMPTS_KEPT`` entries of about 130 bytes each (the error text
is cut to ``ERROR_CHARS``), so a task retried forever keeps a record of
constant size. docs/design.md, "Attempt and claim history", has the format.
"""

from __future__ import annotations

from typing import Any

from ..backends.records import TaskDetail
from ..backends.states import FAILURE, REVERT_FAILURE, REVERTED, REVERTING, RUNNING, SUCCESS

__all__ = ["HISTORY", "REVERT", "ATTEMPTS_KEPT", "ERROR_CHARS", "history_of", "earlier_attempts",
           "revert_started", "revert_finished", "CANCELLED_TYPE"]

HISTORY = "history"  # task meta: the earlier attempts, oldest first
REVERT = "revert"  # task meta: when and where its revert ran
#: earlier attempts kept per task (the current one is the detail itself)
ATTEMPTS_KEPT = 5
#: longest error text kept per earlier attempt
ERROR_CHARS = 200
#: the failure type an operator's cancel records on a running task (``ops.actions``)
CANCELLED_TYPE = "flowbaton.Cancelled"

_OUTCOMES = {
    SUCCESS: "success",
    FAILURE: "failure",
    REVERTED: "reverted",
    REVERT_FAILURE: "revert failure",
    REVERTING: "in doubt",
}


def history_of(detail: TaskDetail) -> list[dict[str, Any]]:
    """``detail``'s earlier attempts, oldest first: copies of the entries
    that are objects (a record is untrusted: anything else is left out)."""
    history = detail.meta.get(HISTORY)
    return [dict(entry) for entry in history if isinstance(entry, dict)] if isinstance(history, list) else []


def earlier_attempts(previous: TaskDetail | None, *, retried_at: float | None = None) -> list[dict[str, Any]]:
    """``previous``'s history with ``previous`` itself as its newest entry
    (the oldest beyond ``ATTEMPTS_KEPT`` dropped): what the next attempt's
    record keeps. ``retried_at``: this run saw the attempt fail at that time
    and retries it; otherwise a RUNNING attempt was cut short by the end of
    its claim (in doubt: when it ended, if it did, nobody knows)."""
    if previous is None:
        return []
    history = history_of(previous)
    if previous.started_at is None or previous.attempts < 1:
        return history[-ATTEMPTS_KEPT:]  # never started (PENDING after an operator's retry)
    entry: dict[str, Any] = {
        "attempt": previous.attempts,
        "started_at": previous.started_at,
        "finished_at": retried_at if retried_at is not None else previous.finished_at,
        "outcome": _outcome(previous, retried_at),
        "owner": previous.owner,
        "epoch": previous.epoch,
    }
    if previous.failure:
        text = f"{previous.failure.get('type', '')}: {previous.failure.get('message', '')}"
        entry["error"] = text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."
    return [*history[-(ATTEMPTS_KEPT - 1):], entry]


def _outcome(previous: TaskDetail, retried_at: float | None) -> str:
    if previous.state == RUNNING:
        return "retry" if retried_at is not None else "in doubt"
    if previous.state == FAILURE and previous.failure and previous.failure.get("type") == CANCELLED_TYPE:
        return "cancelled"
    return _OUTCOMES.get(previous.state, previous.state.lower())


def revert_started(detail: TaskDetail, at: float, owner: str, epoch: int) -> dict[str, Any]:
    """``detail.meta`` as a revert starts: when, who, and when the execute
    had ended (the revert's end replaces ``finished_at``)."""
    revert = {"started_at": at, "finished_at": None, "owner": owner, "epoch": epoch,
              "execute_finished_at": detail.finished_at}
    return {**detail.meta, REVERT: revert}


def revert_finished(detail: TaskDetail, at: float) -> dict[str, Any]:
    """``detail.meta`` with its revert's end."""
    revert = detail.meta.get(REVERT)
    if not isinstance(revert, dict):
        return detail.meta
    return {**detail.meta, REVERT: {**revert, "finished_at": at}}
