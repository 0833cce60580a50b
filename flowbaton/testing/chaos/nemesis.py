"""The nemesis: a seeded schedule of faults, carried out one after another.

``plan_faults`` turns a seed into the whole schedule before the run starts
(kind, target, calm before, how long, cut mode), cycling through every fault
kind in a shuffled order so each one occurs; the same seed and settings give
the same schedule, so a failing run can be replayed. ``Nemesis`` carries the
schedule out and logs each fault (planned values, the replica id hit, when it
started and healed) to ``nemesis.jsonl`` and to the report.

Replica faults (any backend):

- ``kill``: SIGKILL a replica while one of its tasks runs; a new process
  takes its slot after ``duration``.
- ``zombie``: SIGSTOP a replica mid-task for longer than its lease, then
  SIGCONT: it wakes up believing it still owns its flows.
- ``cut``: the replica's proxies stop forwarding (``blackhole``) or reset
  every connection (``reset``) for ``duration`` (half a lease to three).
- ``deploy``: a rolling upgrade that stops halfway: a new deploy
  generation (new code, newer build) goes to half the replicas (at least
  one). The target is SIGKILLed mid-task and comes back on the new code
  after ``duration``; the others of that half stop gracefully (SIGTERM) and
  start on it at once. Old and new builds then run side by side until a
  later deploy or the end of the fault phase, when ``heal_everything``
  finishes the rollout.

Backend faults come from the setup (``setups.py``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowbaton.testing.chaos.proxy import CUT_MODES
from flowbaton.testing.chaos.replicas import LedgerWatch, ReplicaSet
from flowbaton.testing.chaos.setups import Setup, SqliteSetup
from flowbaton.testing.chaos.workload import generation_build

__all__ = ["REPLICA_FAULTS", "Fault", "Nemesis", "plan_faults"]

log = logging.getLogger("flowbaton.testing.chaos")

REPLICA_FAULTS = ("kill", "zombie", "cut", "deploy")
_BUSY_WAIT = 5.0  # seconds to wait for the target to be mid-task


@dataclass(frozen=True)
class Fault:
    index: int
    kind: str
    gap: float  # seconds of calm before it
    duration: float  # how long it lasts
    target: str | None = None  # replica slot, for replica faults
    mode: str | None = None  # cut mode


@dataclass
class FaultRecord:
    """What happened: the plan plus the times and ids seen while doing it."""

    fault: Fault
    start: float = 0.0
    heal: float = 0.0
    replica: str | None = None  # replica id (incarnation) hit
    busy: bool | None = None  # was it mid-task when hit
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self.fault), "start": self.start, "heal": self.heal, "replica": self.replica,
                "busy": self.busy, "detail": self.detail}


def available_faults(setup: Setup, slots: list[str]) -> tuple[str, ...]:
    kinds = [k for k in REPLICA_FAULTS if k != "cut" or any(setup.can_cut(s) for s in slots)]
    return (*kinds, *setup.faults)


def _duration(kind: str, rng: random.Random, lease: float, setup: Setup) -> float:
    if kind in ("kill", "deploy"):
        return rng.uniform(0.2, 2.0)
    if kind == "zombie":
        return rng.uniform(1.5 * lease, 3.0 * lease)
    if kind == "cut":
        return rng.uniform(0.5 * lease, 3.0 * lease)
    return setup.fault_duration(kind, rng, lease)


def plan_faults(seed: int, kinds: tuple[str, ...], total: float, lease: float, slots: list[str],
                setup: Setup) -> list[Fault]:
    """The schedule: faults until their calm + duration add up to ``total``
    seconds, and at least one of each kind; every kind once per shuffled round."""
    rng = random.Random(f"nemesis/{seed}")
    plan: list[Fault] = []
    elapsed, round_ = 0.0, list(kinds)
    while kinds and (elapsed < total or len(plan) < len(kinds)):
        if not round_:
            round_ = list(kinds)
        rng.shuffle(round_)
        kind = round_.pop()
        cuttable = [s for s in slots if setup.can_cut(s)]
        target = rng.choice(cuttable if kind == "cut" else slots) if kind in REPLICA_FAULTS else None
        mode = rng.choice(CUT_MODES) if kind == "cut" else None
        fault = Fault(len(plan), kind, rng.uniform(lease, 2.5 * lease), _duration(kind, rng, lease, setup),
                      target, mode)
        plan.append(fault)
        elapsed += fault.gap + fault.duration
    return plan


class Nemesis:
    """Carries out a plan against the replicas and the backend."""

    def __init__(self, folder: Path, setup: Setup, replicas: ReplicaSet, seed: int, lease: float) -> None:
        self.folder = folder
        self.setup = setup
        self.replicas = replicas
        self.lease = lease
        self.rng = random.Random(f"nemesis-run/{seed}")
        self.ledger = LedgerWatch(folder / "ledger")
        self.records: list[FaultRecord] = []
        self.rolled_out: list[str] = []  # replica ids started when the rollout was finished
        self._log = (folder / "nemesis.jsonl").open("a")
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self, plan: list[Fault]) -> list[FaultRecord]:
        try:
            for fault in plan:
                if self._stop.wait(fault.gap):
                    break
                self.records.append(self._carry_out(fault))
        finally:
            self.heal_everything()
            self._log.close()
        return self.records

    def _carry_out(self, fault: Fault) -> FaultRecord:
        record = FaultRecord(fault)
        self._inject(record)
        record.start = time.monotonic()
        log.warning("nemesis: %s %s (%.1fs) %s", fault.kind, record.replica or "", fault.duration, record.detail)
        self._stop.wait(fault.duration)
        self._heal(record)
        record.heal = time.monotonic()
        self._log.write(json.dumps(record.to_dict()) + "\n")
        self._log.flush()
        return record

    # ------------------------------------------------------------- inject

    def _inject(self, record: FaultRecord) -> None:
        kind, slot = record.fault.kind, record.fault.target
        if slot is not None:
            record.replica = self.replicas.replicas[slot].replica_id
            if kind != "cut":
                record.busy = self._wait_busy(record.replica)
        if kind in ("kill", "deploy"):
            assert slot is not None
            self.replicas.kill(slot)
            if kind == "deploy":
                self._deploy(record, slot)
        elif kind == "zombie":
            assert slot is not None
            record.detail["stop_tries"] = self._pause(slot)
        elif kind == "cut":
            assert slot is not None and record.fault.mode is not None and self.setup.hub is not None
            self.setup.hub.cut(slot, record.fault.mode)
        else:
            record.detail.update(self.setup.inject(kind, self.rng, self.lease))

    def _deploy(self, record: FaultRecord, target: str) -> None:
        """The target (already killed) and the oldest others, half the
        fleet in all, move to a new generation; the others restart now."""
        generation = self.replicas.newest_generation() + 1
        slots = self.replicas.replicas
        others = sorted((s for s in slots if s != target), key=lambda s: (slots[s].generation, self.rng.random()))
        companions = others[:max(1, len(slots) // 2) - 1]
        slots[target].generation = generation
        for slot in companions:
            self.replicas.stop(slot)
            slots[slot].generation = generation
            self.replicas.start(slot)
        record.detail.update(generation=generation, build=generation_build(generation),
                             upgraded=[target, *companions],
                             builds={s: generation_build(r.generation) for s, r in slots.items()})

    def _wait_busy(self, replica_id: str) -> bool:
        deadline = time.monotonic() + _BUSY_WAIT
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.ledger.busy(replica_id):
                return True
            time.sleep(0.02)
        return False

    def _pause(self, slot: str) -> int:
        """SIGSTOP, but on SQLite not inside a write transaction: a process
        stopped there blocks every writer on the host (a SQLite property the
        ``stall-backend`` fault covers on its own)."""
        tries = 0
        while True:
            tries += 1
            self.replicas.pause(slot)
            if not isinstance(self.setup, SqliteSetup) or tries >= 50 or not self.setup.writers_blocked():
                return tries
            self.replicas.resume(slot)
            time.sleep(0.01)

    # --------------------------------------------------------------- heal

    def _heal(self, record: FaultRecord) -> None:
        kind, slot = record.fault.kind, record.fault.target
        if kind in ("kill", "deploy"):
            assert slot is not None
            record.detail["restarted_as"] = self.replicas.start(slot).replica_id
        elif kind == "zombie":
            assert slot is not None
            self.replicas.resume(slot)
        elif kind == "cut":
            assert slot is not None and self.setup.hub is not None
            self.setup.hub.heal(slot)
        else:
            self.setup.heal(kind)

    def heal_everything(self) -> None:
        """However the run ended: every proxy open, every replica running,
        and a deploy rolled out to the whole fleet."""
        if self.setup.hub is not None:
            self.setup.hub.heal_all()
        self.replicas.ensure_running()
        self.rolled_out = self.replicas.roll_out(self.replicas.newest_generation())
        if self.rolled_out:
            log.warning("nemesis: rollout finished: %s", ", ".join(self.rolled_out))
