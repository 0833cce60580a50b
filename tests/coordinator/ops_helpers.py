"""Shared set-up for the ops tests: the CLI run in-process, stored flows in
any state, fake replica presences. In-process so that ``memory://`` (one
process) runs the same tests as the shared backends, and so that each CLI
call costs milliseconds rather than an interpreter start."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from flowbaton.backends.base import Backend
from flowbaton.backends.records import ReplicaInfo, TaskDetail
from flowbaton.cli.main import main
from flowbaton.engine.lifecycle import new_flow_detail

STEPS = "tests.coord_flows:steps"
SEEDER = "seeder"


@dataclass
class Out:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run_cli(capsys: pytest.CaptureFixture[str], target: Backend | str, *argv: str) -> Out:
    """``flowbaton [--backend URL] ARGV`` in this process; ``target`` is an
    open backend (used as is) or a URL."""
    backend = target if isinstance(target, Backend) else None
    prefix = [] if backend is not None else ["--backend", str(target)]
    try:
        code = main([*prefix, *argv], backend=backend)
    except SystemExit as stop:  # argparse usage errors
        code = int(stop.code or 0)
    captured = capsys.readouterr()
    return Out(code, captured.out, captured.err)


def bad_input(out: Out) -> bool:
    """Exit 2 with one line on stderr and nothing on stdout."""
    lines = out.stderr.strip().splitlines()
    return out.code == 2 and len(lines) == 1 and "Traceback" not in out.stderr and out.stdout == ""


def store(
    backend: Backend,
    state: str,
    *,
    tasks: Iterable[TaskDetail] = (),
    updated_at: float | None = None,
    meta: dict[str, Any] | None = None,
    ledger: str = "/nonexistent/ledger",
    flow_id: str | None = None,
    factory: str = STEPS,
    name: str | None = None,
) -> str:
    """A flow of ``steps(n=2)`` stored in ``state`` with ``tasks``, written
    the way a replica writes (under a claim, then released). ``factory``
    and ``name`` are stored as given (a listing's filters read them)."""
    detail = new_flow_detail(STEPS, kwargs={"n": 2}, inputs={"ledger": ledger}, flow_id=flow_id, name=name)
    detail.factory = factory
    backend.create_flow(detail)
    token = backend.claim(detail.id, SEEDER, 30.0)
    for task in tasks:
        backend.save_task(token, task)
    detail.state, detail.updated_at = state, updated_at or time.time()
    detail.meta = {"tasks": ["s0", "s1"], **(meta or {})}
    backend.save_flow(token, detail)
    backend.release(token)
    return detail.id


def task(task_id: str, state: str, *, version: str = "1.0", result: Any = None, attempts: int = 1,
         at: float | None = None, failure: dict[str, str] | None = None) -> TaskDetail:
    stamp = at or time.time()
    return TaskDetail(task_id, state, result, failure, version, attempts, stamp - 1, stamp, "r0", "r0#x", 1,
                      {"first_started": stamp - 1})


def present(backend: Backend, replica_id: str, allow: list[str], *, host: str = "hostA", pid: int = 4242,
            build: str | None = None) -> None:
    """A live replica's presence record (no replica process behind it)."""
    info = ReplicaInfo(replica_id, host, pid, time.time() - 60, "0.1.0", allow, build=build)
    backend.register_replica(info, 120.0)
