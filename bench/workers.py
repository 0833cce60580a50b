"""Driver subprocesses: flowbaton's in the project's interpreter, TaskFlow's
in its virtualenv, both speaking the line protocol of ``peers/common.py``
(or run once and print one JSON line).

Each side runs in a process of its own, so neither pays for the other's
imports, threads or heap, and counters patched into one client library
(kazoo, redis-py, sqlite3) count that side alone.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .venv import BENCH, PEERS

__all__ = ["REPO", "Worker", "WorkerError", "flowbaton_argv", "taskflow_argv", "env", "run_once", "spawn", "until"]

REPO = BENCH.parent


class WorkerError(RuntimeError):
    """A driver failed or answered with an error."""


def env() -> dict[str, str]:
    """The repository root on PYTHONPATH (``bench.flows`` must import in replicas)."""
    paths = [str(REPO), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), PYTHONUNBUFFERED="1")


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A long-running process (a replica, a conductor) in a session of its
    own (killed with its children), its output appended to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=REPO, env=env(), start_new_session=True)


def until(check: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    """``check()``'s first truthy value, or None after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value or None
        time.sleep(interval)


def flowbaton_argv(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def taskflow_argv(python: Path, script: str, *args: str) -> list[str]:
    return [str(python), str(PEERS / script), *args]


class Worker:
    """A long-lived driver: one JSON command in, one JSON answer out."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv = argv
        self.log = log
        with log.open("ab") as sink:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink,
                                         cwd=REPO, env=env(), text=True, start_new_session=True)

    def ask(self, command: dict[str, Any], wait: float = 300.0) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], wait)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise WorkerError(f"{self.argv[-1]}: no answer to {command} ({self._tail()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise WorkerError(f"{self.argv[-1]}: {answer['error']} ({self._tail()})")
        return answer

    def _tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "log: " + " | ".join(text.strip().splitlines()[-5:])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def run_once(argv: list[str], log: Path, timeout: float = 300.0) -> dict[str, Any]:
    """Run a driver to its end; its last stdout line is its JSON answer."""
    with log.open("ab") as sink:
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=sink, cwd=REPO, env=env(),
                                  text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as err:
            raise WorkerError(f"{argv[-1]}: no answer within {timeout:.0f}s") from err
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise WorkerError(f"{' '.join(argv[-3:])}: exit {done.returncode}; see {log}")
    answer: dict[str, Any] = json.loads(lines[-1])
    return answer
