"""Real ``flowbaton replica`` processes, and the signals the nemesis sends them.

Slot ``r1`` is one replica position; each process started in it is a new
incarnation with its own replica id (``r1-1``, ``r1-2``...), so the evidence
always says which process did what. Each slot runs one deploy generation
(``workload``) with its build (``--build``); a deploy restarts a slot on a
newer one, and ``builds`` remembers the build of every incarnation. Replicas run the CLI through
``replica_entry``, which records their history of backend calls
(``FLOWBATON_RECORD_WRITES``); they write their tasks' ledger
(``FLOWBATON_CHAOS_LEDGER``) into the run folder too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import flowbaton
from flowbaton.testing.chaos.workload import DEPLOY_ENV, generation_build
from flowbaton.testing.ledger import ENV as LEDGER_ENV
from flowbaton.testing.recorder import ENV as RECORD_ENV

__all__ = ["LedgerWatch", "Replica", "ReplicaSet", "replica_env"]

#: ``python -m flowbaton`` with the recorder passed in (its docstring says why)
ENTRY = "flowbaton.testing.chaos.replica_entry"


def replica_env(folder: Path) -> dict[str, str]:
    """The environment of every replica: evidence folders, and a PYTHONPATH
    that finds flowbaton (also from a source checkout) and the user's own
    factories (the harness's working directory)."""
    source_root = str(Path(flowbaton.__file__).resolve().parents[1])
    paths = [os.getcwd(), source_root, os.environ.get("PYTHONPATH", "")]
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in paths if p),
        PYTHONUNBUFFERED="1",
        **{RECORD_ENV: str(folder / "history"), LEDGER_ENV: str(folder / "ledger")},
    )


@dataclass
class Replica:
    slot: str
    url: str
    incarnation: int = 0
    generation: int = 0  # the deploy generation its next (or current) process runs
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # SIGSTOPped right now
    ids: list[str] = field(default_factory=list)  # every replica id this slot had

    @property
    def replica_id(self) -> str:
        return f"{self.slot}-{self.incarnation}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signum)


class ReplicaSet:
    """Starts, signals and stops the replicas of a run."""

    def __init__(self, folder: Path, urls: dict[str, str], *, allow: Sequence[str], lease: float,
                 concurrency: int) -> None:
        self.folder = folder
        self.env = replica_env(folder)
        self.allow = list(allow)
        self.lease = lease
        self.concurrency = concurrency
        self.replicas = {slot: Replica(slot, url) for slot, url in urls.items()}
        self.builds: dict[str, str] = {}  # replica id -> the build it ran
        self.lives: dict[str, list[float | None]] = {}  # replica id -> [started, ended (None: still)]
        (folder / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, slot: str) -> Replica:
        """A new incarnation in ``slot`` (the old one must be dead)."""
        replica = self.replicas[slot]
        replica.incarnation += 1
        replica.ids.append(replica.replica_id)
        build = self.builds[replica.replica_id] = generation_build(replica.generation)
        self.lives[replica.replica_id] = [time.monotonic(), None]
        cmd = [sys.executable, "-m", ENTRY, "--backend", replica.url, "replica",
               "--lease", str(self.lease), "--replica-id", replica.replica_id,
               "--concurrency", str(self.concurrency), "--build", build]
        for prefix in self.allow:
            cmd += ["--allow", prefix]
        log = self.folder / "logs" / f"{replica.replica_id}.log"
        with log.open("wb") as out:
            env = {**self.env, DEPLOY_ENV: str(replica.generation)}
            replica.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        replica.stopped = False
        return replica

    def start_all(self) -> None:
        for slot in self.replicas:
            self.start(slot)

    def kill(self, slot: str) -> None:
        replica = self.replicas[slot]
        replica.signal(signal.SIGCONT)
        replica.signal(signal.SIGKILL)
        if replica.proc is not None:
            replica.proc.wait(timeout=30)
        self._ended(replica)

    def _ended(self, replica: Replica) -> None:
        life = self.lives.get(replica.replica_id)
        if life is not None and life[1] is None:
            life[1] = time.monotonic()

    def stop(self, slot: str, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM: the replica hands its flows back), as a
        rolling upgrade does; SIGKILL after ``timeout``."""
        replica = self.replicas[slot]
        replica.signal(signal.SIGCONT)
        replica.signal(signal.SIGTERM)
        if replica.proc is not None:
            try:
                replica.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(slot)
        self._ended(replica)

    def newest_generation(self) -> int:
        return max(r.generation for r in self.replicas.values())

    def roll_out(self, generation: int) -> list[str]:
        """Finish a rollout: every slot on an older generation is stopped
        gracefully and started on ``generation``, one at a time; the new
        replica ids."""
        started = []
        for slot, replica in self.replicas.items():
            if replica.generation < generation:
                self.stop(slot)
                replica.generation = generation
                started.append(self.start(slot).replica_id)
        return started

    def pause(self, slot: str) -> None:
        self.replicas[slot].signal(signal.SIGSTOP)
        self.replicas[slot].stopped = True

    def resume(self, slot: str) -> None:
        self.replicas[slot].signal(signal.SIGCONT)
        self.replicas[slot].stopped = False

    def ensure_running(self) -> list[str]:
        """Resume the stopped and restart the dead; the slots restarted."""
        restarted = []
        for slot, replica in self.replicas.items():
            if replica.stopped:
                self.resume(slot)
            if not replica.alive():
                self.start(slot)
                restarted.append(slot)
        return restarted

    def stop_all(self, timeout: float = 60.0) -> dict[str, int | None]:
        """Graceful stop (SIGTERM: claims released); SIGKILL after ``timeout``."""
        for replica in self.replicas.values():
            replica.signal(signal.SIGCONT)
            replica.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for replica in self.replicas.values():
            if replica.proc is None:
                continue
            try:
                codes[replica.replica_id] = replica.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                replica.proc.kill()
                codes[replica.replica_id] = replica.proc.wait()
            self._ended(replica)
        return codes

    def all_ids(self) -> dict[str, str]:
        """Replica id -> slot, over every incarnation."""
        return {rid: slot for slot, r in self.replicas.items() for rid in r.ids}


class LedgerWatch:
    """Follows the ledger files as they grow: which replica is mid-task now."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offsets: dict[Path, int] = {}
        self._open: dict[tuple[str, str, str], str] = {}  # (flow, task, replica) -> phase

    def _scan(self) -> None:
        for path in sorted(self.folder.glob("ledger-*.jsonl")):
            with path.open("rb") as handle:
                handle.seek(self._offsets.get(path, 0))
                data = handle.read()
            end = data.rfind(b"\n") + 1  # leave a half-written line for next time
            self._offsets[path] = self._offsets.get(path, 0) + end
            for line in data[:end].splitlines():
                self._note(json.loads(line))

    def _note(self, entry: dict[str, object]) -> None:
        key = (str(entry["flow"]), str(entry["task"]), str(entry["replica"]))
        if entry["phase"] == "start":
            self._open[key] = "start"
        else:
            self._open.pop(key, None)

    def busy(self, replica_id: str) -> bool:
        """True if a task of ``replica_id`` has started and not ended."""
        self._scan()
        return any(key[2] == replica_id for key in self._open)
