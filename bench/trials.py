"""Multi-process trials: two replicas, one 20-step flow, one signal to the owner.

A trial starts two replicas of one system (flowbaton replicas or TaskFlow
conductors), waits until both are ready, submits the flow, and when the
owner has finished five tasks sends it a signal:

- ``kill``: SIGKILL; figure: seconds from the kill to the first task the
  survivor starts;
- ``term``: SIGTERM (graceful stop); same figure;
- ``zombie``: SIGSTOP until the survivor has taken over, then SIGCONT;
  figures: tasks the zombie starts after it resumes, completed tasks run
  again by anyone, and tasks run more than once for any reason.

Everything is read from the ledger the tasks write (``peers/common.py``),
so both systems are measured by the same code. Trials of one system run
together in a group (their replicas start, then all flows are submitted at
once), which keeps the whole suite within its time budget; they share the
machine only while idle replicas wait out a lease.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from .peers.common import read_ledger
from .sides import STEPS, Setup
from .workers import until

__all__ = ["Trial", "Side", "run_group", "TrialError"]

KILL_AFTER = 5  # tasks the owner finishes before it is signalled
TAKEOVER_CAP = 25.0  # seconds beyond the lease before "never"
QUIET = 1.5  # zombie: seconds without a ledger line that end the watch


class TrialError(RuntimeError):
    """A trial could not reach the point it measures (its logs say why)."""


class Side(Protocol):
    name: str

    def prepare(self, setup: Setup) -> None: ...
    def start_replica(self, setup: Setup, name: str) -> subprocess.Popen[bytes]: ...
    def ready(self, setup: Setup, replicas: int) -> bool: ...
    def submit(self, setup: Setup) -> None: ...
    def forget(self, setup: Setup) -> None: ...



@dataclass
class Trial:
    side: Side
    setup: Setup
    kind: str  # kill | term | zombie
    cap: float | None = None  # seconds after the signal to wait for a takeover
    reruns: bool = True  # kill: watch the survivor finish, counting completed tasks run again
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self.setup.folder.mkdir(parents=True, exist_ok=True)
        try:
            self.side.prepare(self.setup)
        except Exception as err:
            self.result["error"] = f"{type(err).__name__}: {err}"
            return
        self.procs = [self.side.start_replica(self.setup, f"r{n}") for n in (1, 2)]

    def ready(self) -> bool:
        """True once both replicas are ready (or the trial has failed)."""
        if "error" in self.result:
            return True
        if any(proc.poll() is not None for proc in self.procs):
            self.result["error"] = f"a replica exited before the flow was submitted; see {self.setup.folder}"
            return True
        return self.side.ready(self.setup, len(self.procs))

    def run(self) -> None:
        """Submit, wait for the owner's fifth task, signal it, measure."""
        if "error" in self.result:
            return
        try:
            self.side.submit(self.setup)
            owner = until(self._owner, 30.0)
            if owner is None:
                raise TrialError(f"no replica finished {KILL_AFTER} tasks; see {self.setup.folder}")
            getattr(self, f"_{self.kind}")(owner)
        except Exception as err:  # reported as the trial's error; the figure shows it missing
            self.result["error"] = f"{type(err).__name__}: {err}"

    # ------------------------------------------------------------- ledger

    def _owner(self) -> int | None:
        ended: dict[int, set[str]] = {}
        for line in read_ledger(self.setup.ledger):
            if line["ev"] == "end":
                ended.setdefault(line["pid"], set()).add(line["task"])
        return next((pid for pid, tasks in ended.items() if len(tasks) >= KILL_AFTER), None)

    def _first_other_start(self, owner: int, after: float) -> float | None:
        starts = [line["t"] for line in read_ledger(self.setup.ledger)
                  if line["ev"] == "start" and line["pid"] != owner and line["t"] > after]
        return min(starts) if starts else None

    def _takeover(self, owner: int, signalled: float) -> float | None:
        cap = self.cap if self.cap is not None else self.setup.lease + TAKEOVER_CAP
        started = until(lambda: self._first_other_start(owner, signalled), cap)
        return None if started is None else started - signalled

    # ------------------------------------------------------------- kinds

    def _kill(self, owner: int) -> None:
        signalled = _signal(owner, signal.SIGKILL)
        self.result["takeover"] = self._takeover(owner, signalled)
        if self.reruns and self.result["takeover"] is not None:
            until(lambda: len(_ended(self.setup.ledger)) >= STEPS, 15.0, 0.05)
            self.result["reruns"] = _reruns(read_ledger(self.setup.ledger))

    def _term(self, owner: int) -> None:
        signalled = _signal(owner, signal.SIGTERM)
        self.result["takeover"] = self._takeover(owner, signalled)

    def _zombie(self, owner: int) -> None:
        stopped = _signal(owner, signal.SIGSTOP)
        self.result["takeover"] = self._takeover(owner, stopped)
        time.sleep(0.2)
        resumed = _signal(owner, signal.SIGCONT)
        until(lambda: self._quiet(), 15.0, 0.1)
        lines = read_ledger(self.setup.ledger)
        self.result["zombie_starts"] = sum(1 for line in lines if line["pid"] == owner
                                           and line["ev"] == "start" and line["t"] > resumed)
        self.result["reruns"] = _reruns(lines)
        self.result["twice"] = _twice(lines)

    def _quiet(self) -> bool:
        lines = read_ledger(self.setup.ledger)
        done = len({line["task"] for line in lines if line["ev"] == "end"}) >= STEPS
        return done and time.monotonic() - max(line["t"] for line in lines) > QUIET

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.side.forget(self.setup)


def _signal(pid: int, signum: signal.Signals) -> float:
    """Send ``signum`` to ``pid``; the monotonic time just before it."""
    now = time.monotonic()
    os.kill(pid, signum)
    return now


def _ended(ledger: str) -> set[str]:
    return {line["task"] for line in read_ledger(ledger) if line["ev"] == "end"}


def _twice(lines: list[dict[str, Any]]) -> int:
    """Tasks started more than once, whatever the reason (an in-doubt task
    re-run by the new owner counts: that is the at-least-once contract)."""
    starts: dict[str, int] = {}
    for line in lines:
        if line["ev"] == "start":
            starts[line["task"]] = starts.get(line["task"], 0) + 1
    return sum(1 for n in starts.values() if n > 1)


def _reruns(lines: list[dict[str, Any]]) -> int:
    """Completed tasks started again. A task counts as completed once the
    process that ran it has started a later task: in a linear flow both
    systems store a task's result before starting the next one. (A task
    whose owner died between its last line and that store is in doubt, and
    running it again is the at-least-once contract, not a duplicate.)"""
    committed: dict[str, float] = {}
    last_end: dict[int, tuple[str, float]] = {}
    again: set[str] = set()
    for line in sorted(lines, key=lambda item: item["t"]):
        task, pid = line["task"], line["pid"]
        if line["ev"] == "end":
            last_end[pid] = (task, line["t"])
            continue
        if pid in last_end and last_end[pid][0] != task:
            committed.setdefault(*last_end.pop(pid))
        if task in committed:
            again.add(task)
    return len(again)


def run_group(trials: list[Trial], ready_timeout: float = 60.0) -> None:
    """Start every trial's replicas, wait until all are ready, then run the
    trials side by side (each on a thread) and tear everything down."""
    try:
        for trial in trials:
            trial.start()
        if not until(lambda: all([trial.ready() for trial in trials]), ready_timeout, 0.05):
            for trial in trials:
                if not trial.ready():
                    trial.result["error"] = f"replicas not ready in {ready_timeout:.0f}s; see {trial.setup.folder}"
        threads = [threading.Thread(target=trial.run, daemon=True) for trial in trials]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for trial in trials:
            trial.close()
