"""A Backend wrapper that records every write attempt, for the chaos checker.

``RecordingBackend(inner, folder)`` passes every call through to ``inner``
and, for the calls that change or reveal claimed state (``claim``,
``renew``, ``release``, ``save_task``, ``save_tasks``, ``save_run``, ``save_flow``, ``save_flows``, ``delete_flow``,
``create_flow``, ``record_decline``, and the reads a new owner resumes
from: ``load_flow``, ``load_tasks``, ``load_runs``), appends one ``invoke`` line before the call and one ``ok``
or ``fail`` line after it to a JSONL history file of this process. A call
with an ``invoke`` and no end was cut short (the process died): the checker
treats it, like a ``fail`` with ``BackendUnavailable``, as "may have landed".

Records are identified by a digest of their JSON text, the same text the
drivers store, so the checker can tell which write produced what a later
read (or the final store) shows. Times are ``time.monotonic()``: one clock
for every process on the host.

Replicas record when ``FLOWBATON_RECORD_WRITES=DIR`` is set in their
environment: the harness starts them through ``testing/chaos/replica_entry.py``,
which passes ``wrap_from_env`` to ``connect(wrap_backend=...)``; the product
itself never imports this module. The wrapper adds two small appends per
call and changes no behaviour.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from flowbaton.backends.base import Backend, StateListener
from flowbaton.backends.records import (
    ClaimInfo,
    ClaimToken,
    Decline,
    FlowDetail,
    Handover,
    ReplicaInfo,
    StoredRun,
    TaskDetail,
    dumps,
)
from flowbaton.engine.meta import FlowMeta
from flowbaton.testing.ledger import read_jsonl

__all__ = ["ENV", "HistoryFile", "RecordingBackend", "digest", "read_history", "wrap_from_env"]

ENV = "FLOWBATON_RECORD_WRITES"

_T = TypeVar("_T")
Entry = dict[str, Any]


def digest(text: str) -> str:
    """Short, stable fingerprint of a record's JSON text."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def result_digest(result: Any) -> str | None:
    return None if result is None else digest(dumps(result))


class HistoryFile:
    """One append-only JSONL file per process; each line is a single
    ``write`` so a SIGKILL can cut the history short but never tear a line."""

    def __init__(self, folder: Path, label: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"writes-{label}-{os.getpid()}-{secrets.token_hex(3)}.jsonl"
        self.path = folder / name
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._seq = itertools.count()
        self._prefix = f"{os.getpid()}.{secrets.token_hex(2)}"
        self._lock = threading.Lock()

    def next_id(self) -> str:
        with self._lock:
            return f"{self._prefix}.{next(self._seq)}"

    def emit(self, entry: Entry) -> None:
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd >= 0:
                os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _token_fields(token: ClaimToken) -> Entry:
    return {"flow": token.flow_id, "claim": token.claim_id, "epoch": token.epoch}


def _task_fields(task: TaskDetail) -> Entry:
    return {"task": task.task_id, "state": task.state, "attempts": task.attempts,
            "d": digest(task.to_json()), "r": result_digest(task.result)}


def _tasks_read(tasks: dict[str, TaskDetail]) -> Entry:
    """What a read of a flow's tasks showed: each record's digest."""
    return {"tasks": {t: digest(d.to_json()) for t, d in tasks.items()}}


def _task_entries(token: ClaimToken, tasks: Sequence[TaskDetail]) -> list[Entry]:
    return [{"op": "save_task", **_token_fields(token), **_task_fields(task)} for task in tasks]


def _flow_entry(token: ClaimToken, flow: FlowDetail) -> Entry:
    return {"op": "save_flow", **_token_fields(token), **_flow_fields(flow)}


def _flow_fields(flow: FlowDetail) -> Entry:
    return {"state": flow.state, "owner": flow.owner, "d": digest(flow.to_json()), "build": FlowMeta(flow.meta).build}


class RecordingBackend(Backend):
    """``inner`` with a history of its claims, fenced writes and resume reads."""

    def __init__(self, inner: Backend, history: HistoryFile) -> None:
        self.inner = inner
        self.history = history
        self.url = inner.url
        # The replica asks the backend object for its capabilities ("session",
        # "watch"): answer with the wrapped driver's, per instance.
        vars(self).update(schemes=inner.schemes, capabilities=inner.capabilities)

    @classmethod
    def from_url(cls, url: str, **options: object) -> Backend:
        raise TypeError("wrap an opened backend: RecordingBackend(open_backend(url), HistoryFile(...))")

    # --------------------------------------------------------------- record

    def _call(self, op: str, fields: Entry, call: Callable[[], _T],
              done: Callable[[_T], Entry] | None = None) -> _T:
        op_id = self.history.next_id()
        self.history.emit({"i": op_id, "ph": "invoke", "op": op, "t": time.monotonic(), **fields})
        try:
            value = call()
        except BaseException as err:
            self.history.emit({"i": op_id, "ph": "fail", "t": time.monotonic(), "err": type(err).__name__,
                               "msg": str(err)[:200]})
            raise
        extra = done(value) if done is not None else {}
        self.history.emit({"i": op_id, "ph": "ok", "t": time.monotonic(), **extra})
        return value

    # ---------------------------------------------------------------- flows

    def create_flow(self, flow: FlowDetail) -> None:
        self._call("create_flow", {"flow": flow.id, **_flow_fields(flow)}, lambda: self.inner.create_flow(flow))

    def load_flow(self, flow_id: str) -> FlowDetail:
        return self._call("load_flow", {"flow": flow_id}, lambda: self.inner.load_flow(flow_id),
                          lambda flow: _flow_fields(flow))

    def load_tasks(self, flow_id: str) -> dict[str, TaskDetail]:
        return self._call("load_tasks", {"flow": flow_id}, lambda: self.inner.load_tasks(flow_id), _tasks_read)

    def load_runs(self, flow_ids: Sequence[str]) -> dict[str, StoredRun]:
        """Recorded as the ``load_flow`` and ``load_tasks`` of each flow
        read, with the call's times: the checker sees what a new owner
        resumed from, however it was read."""
        start = time.monotonic()
        found = self.inner.load_runs(flow_ids)
        end = time.monotonic()
        for flow_id, (flow, tasks) in found.items():
            for op, fields in (("load_flow", _flow_fields(flow)), ("load_tasks", _tasks_read(tasks))):
                op_id = self.history.next_id()
                self.history.emit({"i": op_id, "ph": "invoke", "op": op, "t": start, "flow": flow_id})
                self.history.emit({"i": op_id, "ph": "ok", "t": end, **fields})
        return found

    def list_flows(self, states: Collection[str] | None = None) -> list[FlowDetail]:
        return self.inner.list_flows(states)

    def delete_flow(self, token: ClaimToken) -> None:
        self._call("delete_flow", _token_fields(token), lambda: self.inner.delete_flow(token))

    # --------------------------------------------------------------- claims

    def claim(self, flow_id: str, owner: str, lease: float, *, force: bool = False) -> ClaimToken:
        return self._call("claim", {"flow": flow_id, "owner": owner, "force": force},
                          lambda: self.inner.claim(flow_id, owner, lease, force=force),
                          lambda token: {"claim": token.claim_id, "epoch": token.epoch})

    def renew(self, token: ClaimToken, lease: float) -> None:
        self._call("renew", _token_fields(token), lambda: self.inner.renew(token, lease))

    def release(self, token: ClaimToken) -> None:
        self._call("release", _token_fields(token), lambda: self.inner.release(token))

    def current_claim(self, flow_id: str) -> ClaimInfo | None:
        return self.inner.current_claim(flow_id)

    def list_claims(self) -> list[ClaimInfo]:
        return self.inner.list_claims()

    # -------------------------------------------------------- fenced writes

    def save_task(self, token: ClaimToken, task: TaskDetail) -> None:
        self._call("save_task", {**_token_fields(token), **_task_fields(task)},
                   lambda: self.inner.save_task(token, task))

    def save_tasks(self, token: ClaimToken, tasks: Sequence[TaskDetail]) -> None:
        """One all-or-nothing call, recorded as one ``save_task`` per record
        with the call's times and outcome: the checker reasons per record."""
        self._batch(_task_entries(token, tasks), lambda: self.inner.save_tasks(token, tasks))

    def save_flows(self, writes: Sequence[tuple[ClaimToken, FlowDetail]]) -> list[bool]:
        """Recorded as one ``save_flow`` per record, with the call's times;
        a record the call refused ends as a ``fail`` with ``ClaimLost``."""
        entries = [_flow_entry(token, flow) for token, flow in writes]
        done: list[bool] = []
        self._batch(entries, lambda: done.extend(self.inner.save_flows(writes)), lambda: done)
        return done

    def save_run(self, token: ClaimToken, tasks: Sequence[TaskDetail], flow: FlowDetail) -> None:
        """Recorded as ``save_tasks`` plus one ``save_flow``, all with the
        call's times and outcome."""
        self._batch([*_task_entries(token, tasks), _flow_entry(token, flow)],
                    lambda: self.inner.save_run(token, tasks, flow))

    def _batch(self, entries: list[Entry], call: Callable[[], object],
               answers: Callable[[], list[bool]] | None = None) -> None:
        """One call writing several records, recorded as one op per record
        with the call's times. ``answers``: per record, whether the call
        stored it (a refused one ends as a ``fail`` with ``ClaimLost``);
        else all or none."""
        ids = [self.history.next_id() for _ in entries]
        start = time.monotonic()
        for op_id, entry in zip(ids, entries, strict=True):
            self.history.emit({"i": op_id, "ph": "invoke", "t": start, **entry})
        try:
            call()
        except BaseException as err:
            self._end(ids, "fail", {"err": type(err).__name__, "msg": str(err)[:200]})
            raise
        if answers is None:
            self._end(ids, "ok", {})
            return
        end = time.monotonic()
        for op_id, ok in zip(ids, answers(), strict=True):
            self.history.emit({"i": op_id, "ph": "ok", "t": end} if ok else
                              {"i": op_id, "ph": "fail", "t": end, "err": "ClaimLost", "msg": "refused in a batch"})

    def _end(self, ids: list[str], phase: str, extra: Entry) -> None:
        end = time.monotonic()
        for op_id in ids:
            self.history.emit({"i": op_id, "ph": phase, "t": end, **extra})

    def save_flow(self, token: ClaimToken, flow: FlowDetail) -> None:
        self._call("save_flow", {**_token_fields(token), **_flow_fields(flow)},
                   lambda: self.inner.save_flow(token, flow))

    # ------------------------------------------------------ everything else

    def find_runnable(self, limit: int) -> list[str]:
        return self.inner.find_runnable(limit)

    def wait_for_work(self, timeout: float) -> bool:
        return self.inner.wait_for_work(timeout)

    def record_decline(self, flow_id: str, decline: Decline) -> None:
        self._call("decline", {"flow": flow_id, "owner": decline.replica_id, "reason": decline.reason[:200]},
                   lambda: self.inner.record_decline(flow_id, decline))

    def load_declines(self, flow_id: str) -> list[Decline]:
        return self.inner.load_declines(flow_id)

    def register_replica(self, info: ReplicaInfo, lease: float) -> None:
        self.inner.register_replica(info, lease)

    def heartbeat_replica(self, replica_id: str, lease: float) -> None:
        self.inner.heartbeat_replica(replica_id, lease)

    def unregister_replica(self, replica_id: str) -> None:
        self.inner.unregister_replica(replica_id)

    def list_replicas(self) -> list[ReplicaInfo]:
        return self.inner.list_replicas()

    def count_backlog(self) -> int:
        return self.inner.count_backlog()

    def backlog(self, limit: int) -> list[str]:
        return self.inner.backlog(limit)

    def page_flows(self, states: Collection[str] | None, after: str | None, limit: int
                   ) -> tuple[list[FlowDetail], str | None]:
        return self.inner.page_flows(states, after, limit)

    def flow_ids(self, prefix: str, limit: int) -> list[str]:
        return self.inner.flow_ids(prefix, limit)

    def request_handover(self, request: Handover) -> None:
        self.inner.request_handover(request)

    def load_handovers(self, replica_id: str) -> list[Handover]:
        return self.inner.load_handovers(replica_id)

    def clear_handover(self, replica_id: str, flow_id: str | None) -> None:
        self.inner.clear_handover(replica_id, flow_id)

    def add_state_listener(self, listener: StateListener) -> None:
        self.inner.add_state_listener(listener)

    def warnings(self) -> list[str]:
        return self.inner.warnings()

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.history.close()


def wrap_from_env(backend: Backend, label: str = "replica") -> Backend:
    """``backend`` recorded into ``$FLOWBATON_RECORD_WRITES`` if that is set,
    else ``backend`` itself."""
    folder = os.environ.get(ENV)
    if not folder:
        return backend
    return RecordingBackend(backend, HistoryFile(Path(folder), label))


def read_history(folder: Path) -> Iterator[Entry]:
    """Every line of every history file in ``folder`` (torn lines skipped)."""
    yield from read_jsonl(folder, "writes-*.jsonl")
