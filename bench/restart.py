"""Restart in place: one process runs a flow of 20 steps of 0.1 s; after its
fifth step it gets SIGKILL and is started again at once with the same
identity (flowbaton: a ``flowbaton replica`` with the same ``--replica-id``;
DBOS: the same executor id). The figure is the time from the kill to the
first step the new process starts, its interpreter start included.

This is the recovery DBOS offers without its Conductor service: a DBOS
process resumes, at launch, the workflows its own executor id left pending,
and never those of another executor. Times come from the shared ledger
(``peers/common.py``), read the same way for both systems.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol

from flowbaton import connect
from flowbaton.backends import Backend, open_backend

from .peers.common import read_ledger
from .sides import STEP_DELAY, STEPS
from .workers import flowbaton_argv, spawn, taskflow_argv, until

__all__ = ["DbosRestart", "FlowbatonRestart", "RestartSide", "measure"]

KILL_AFTER = 5  # steps the first process finishes before the kill
CAP = 30.0  # seconds after the kill before the figure is "never"


class RestartSide(Protocol):
    name: str

    def first(self, folder: Path) -> subprocess.Popen[bytes]:
        """Start the first process and give it the flow."""

    def again(self, folder: Path) -> subprocess.Popen[bytes]:
        """Start the same process again (same identity, same store)."""

    def close(self) -> None: ...




class FlowbatonRestart:
    """A ``flowbaton replica`` on a SQLite file; the flow submitted from here."""

    name = "flowbaton"
    replica_id = "restart-bench"

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self._store: Backend | None = None

    def _url(self, folder: Path) -> str:
        return f"sqlite:///{folder / 'flowbaton.db'}"

    def _replica(self, folder: Path, log: str) -> subprocess.Popen[bytes]:
        argv = flowbaton_argv("flowbaton", "--backend", self._url(folder), "replica", "--allow", "bench.",
                              "--concurrency", "1", "--lease", f"{self.lease:g}", "--replica-id", self.replica_id)
        return spawn(argv, folder / log)

    def first(self, folder: Path) -> subprocess.Popen[bytes]:
        self.close()
        self._store = store = open_backend(self._url(folder))
        proc = self._replica(folder, "first.log")
        until(lambda: proc.poll() is not None or store.list_replicas(), 60.0, 0.05)
        if proc.poll() is not None or not store.list_replicas():
            _kill_group(proc)
            raise RuntimeError(f"flowbaton replica not ready; see {folder / 'first.log'}")
        connect(store, allow=["bench."], lease=self.lease).submit(
            "bench.flows:steps", kwargs={"count": STEPS, "delay": STEP_DELAY, "ledger": str(folder / "ledger.jsonl")})
        return proc

    def again(self, folder: Path) -> subprocess.Popen[bytes]:
        return self._replica(folder, "again.log")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class DbosRestart:
    """``peers/dbos_restart.py`` on a SQLite file, one executor id."""

    name = "dbos"
    executor_id = "restart-bench"
    workflow_id = "restart-bench"

    def __init__(self, python: Path) -> None:
        self.python = python

    def _argv(self, folder: Path, *more: str) -> list[str]:
        return taskflow_argv(self.python, "dbos_restart.py", "--url", f"sqlite:///{folder / 'dbos.db'}",
                             "--executor-id", self.executor_id, "--ledger", str(folder / "ledger.jsonl"),
                             "--workflow", self.workflow_id, "--count", str(STEPS), "--delay", f"{STEP_DELAY:g}",
                             *more)

    def first(self, folder: Path) -> subprocess.Popen[bytes]:
        return spawn(self._argv(folder, "--start", self.workflow_id), folder / "first.log")

    def again(self, folder: Path) -> subprocess.Popen[bytes]:
        return spawn(self._argv(folder), folder / "again.log")

    def close(self) -> None:
        pass


def _owner(ledger: str) -> int | None:
    """The pid that has finished KILL_AFTER steps."""
    ended: dict[int, set[str]] = {}
    for line in read_ledger(ledger):
        if line["ev"] == "end":
            ended.setdefault(line["pid"], set()).add(line["task"])
    return next((pid for pid, tasks in ended.items() if len(tasks) >= KILL_AFTER), None)


def _first_start_after(ledger: str, owner: int, after: float) -> float | None:
    starts = [line["t"] for line in read_ledger(ledger)
              if line["ev"] == "start" and line["pid"] != owner and line["t"] > after]
    return min(starts) if starts else None


def _kill_group(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    if proc is not None:
        proc.wait(timeout=10)


def measure(side: RestartSide, folder: Path) -> float | None:
    """Seconds from the SIGKILL to the restarted process's first step, or
    None if it started none within CAP seconds (RuntimeError if the first
    process never got to the kill; its log says why)."""
    folder.mkdir(parents=True, exist_ok=True)
    ledger = str(folder / "ledger.jsonl")
    first = again = None
    try:
        first = side.first(folder)
        owner = until(lambda: _owner(ledger), 60.0)
        if owner is None:
            raise RuntimeError(f"{side.name}: no process finished {KILL_AFTER} steps; see {folder}")
        killed = time.monotonic()
        os.killpg(first.pid, signal.SIGKILL)  # the whole first process, whatever it forked
        first.wait(timeout=10)
        again = side.again(folder)
        started = until(lambda: _first_start_after(ledger, owner, killed), CAP)
        return None if started is None else started - killed
    finally:
        _kill_group(first)
        _kill_group(again)
        side.close()
