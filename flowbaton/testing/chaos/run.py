"""One chaos run, start to verdict.

1. Start the backend (``setups``), the proxies and N replica processes.
2. Submit the M flows over the first part of the fault phase while the
   nemesis carries out its seeded schedule.
3. Heal everything, wait until every flow has ended (or the drain timeout),
   stop the replicas gracefully.
4. Read the final store (kept as ``final.json``) and check the invariants
   against the history, the ledger and the nemesis log (``report``);
   ``recheck(folder)`` checks a finished run folder again.

Everything a run leaves (history, ledger, replica logs, nemesis log, the
report) stays in its folder, so a failure can be read afterwards.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowbaton.backends import open_backend
from flowbaton.backends.base import Backend
from flowbaton.backends.errors import BackendUnavailable, FlowbatonError, FlowExists
from flowbaton.backends.records import FlowDetail
from flowbaton.backends.states import TERMINAL_FLOW_STATES
from flowbaton.engine import new_flow_detail
from flowbaton.testing.chaos.evidence import Evidence, load_evidence, load_saved, read_final, save_final
from flowbaton.testing.chaos.nemesis import Fault, Nemesis, available_faults, plan_faults
from flowbaton.testing.chaos.proxy import ProxyHub
from flowbaton.testing.chaos.replicas import ReplicaSet
from flowbaton.testing.chaos.report import build_report, write_report
from flowbaton.testing.chaos.setups import Setup, open_setup
from flowbaton.testing.chaos.workload import KINDS, generation_build
from flowbaton.testing.recorder import HistoryFile, RecordingBackend

__all__ = ["WORKLOAD", "ChaosConfig", "recheck", "run_chaos"]

log = logging.getLogger("flowbaton.testing.chaos")

WORKLOAD = "flowbaton.testing.chaos.workload:chaos_flow"
_SUBMIT_SHARE = 0.85  # flows arrive during this share of the fault phase


@dataclass
class ChaosConfig:
    """What to run. ``backend``: sqlite, zookeeper, redis, or a backend URL
    of servers you run. ``duration``: seconds of faults (flows are submitted
    during the first 85% of them). ``factory``/``kwargs``/``inputs``/``allow``: your
    own flows instead of the built-in workload (whose ``kwargs`` may set
    ``work``, a factor on how long its tasks take)."""

    backend: str
    flows: int = 60
    replicas: int = 3
    seed: int = 1
    duration: float = 45.0
    lease: float = 2.0
    concurrency: int = 4
    faults: Sequence[str] | None = None
    folder: Path | None = None
    factory: str = WORKLOAD
    kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    allow: Sequence[str] = ("flowbaton.testing.chaos.",)
    drain_timeout: float = 120.0
    recovery_slack: float = 10.0
    mix: Sequence[float] = (0.8, 0.1, 0.1)  # shares of plain, flaky and doomed workload flows


@dataclass(frozen=True)
class _Submission:
    """One flow to submit: made when it is sent, with the build of the
    newest code deployed then (a service's endpoint submits with its own)."""

    flow_id: str
    kind: str
    kwargs: dict[str, Any]

    def detail(self, config: ChaosConfig, build: str) -> FlowDetail:
        return new_flow_detail(config.factory, kwargs=self.kwargs, inputs=config.inputs, flow_id=self.flow_id,
                               build=build)


class _Submitter(threading.Thread):
    """Submits the flows at a steady pace, retrying while the backend is away."""

    def __init__(self, backend: Backend, config: ChaosConfig, build: Callable[[], str]) -> None:
        super().__init__(name="chaos-submitter", daemon=True)
        self.backend, self.config, self.build = backend, config, build
        self.spread = config.duration * _SUBMIT_SHARE
        self.flows = _submissions(config)
        if self.flows:  # a factory that cannot build fails the run here, not in the thread
            self.flows[0].detail(config, build())
        self.submitted: dict[str, str] = {}
        self.stop_by = float("inf")

    def run(self) -> None:
        start = time.monotonic()
        pace = self.spread / max(1, len(self.flows))
        for number, flow in enumerate(self.flows):
            time.sleep(max(0.0, start + number * pace - time.monotonic()))
            if self._create(flow.detail(self.config, self.build())):
                self.submitted[flow.flow_id] = flow.kind

    def _create(self, detail: FlowDetail) -> bool:
        while time.monotonic() < self.stop_by:
            try:
                self.backend.create_flow(detail)
                return True
            except FlowExists:
                return True  # an earlier attempt whose reply was lost did it
            except BackendUnavailable as err:
                log.info("submit %s: backend unavailable, retrying: %s", detail.id, err)
                time.sleep(0.5)
        return False


def _submissions(config: ChaosConfig) -> list[_Submission]:
    rng = random.Random(f"workload/{config.seed}")
    made = []
    for index in range(config.flows):
        flow_id = f"c{config.seed}-{index:05d}"
        if config.factory == WORKLOAD:
            kind = rng.choices(KINDS, config.mix)[0]
            kwargs: dict[str, Any] = {**config.kwargs, "seed": config.seed, "index": index, "kind": kind}
        else:
            kind, kwargs = "user", dict(config.kwargs)
        made.append(_Submission(flow_id, kind, kwargs))
    return made


def _prepare_folder(config: ChaosConfig) -> Path:
    folder = config.folder or Path(tempfile.mkdtemp(prefix=f"flowbaton-chaos-{config.backend[:10]}-"))
    for sub in ("history", "ledger", "logs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def _wait_registered(observer: Backend, ids: set[str], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ids <= {r.replica_id for r in observer.list_replicas()}:
                return
        except FlowbatonError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"replicas {sorted(ids)} did not register within {timeout:.0f}s (see logs/)")


def _drain(observer: Backend, flow_ids: list[str], timeout: float) -> float:
    """Wait until every flow has ended (or is held for an operator)."""
    start = time.monotonic()
    pending = set(flow_ids)
    while pending and time.monotonic() - start < timeout:
        try:
            states = {f.id: f.state for f in observer.list_flows()}
        except FlowbatonError:
            states = {}
        pending = {f for f in pending if states.get(f) not in (*TERMINAL_FLOW_STATES, "HELD")}
        if pending:
            time.sleep(0.5)
    return time.monotonic() - start


def run_chaos(config: ChaosConfig) -> dict[str, Any]:
    """Run once and return the report (also written to the run folder)."""
    folder = _prepare_folder(config)
    started, hub = time.monotonic(), ProxyHub()
    setup: Setup | None = None
    replicas: ReplicaSet | None = None
    try:
        setup = open_setup(config.backend, folder, hub)
        slots = [f"r{i}" for i in range(config.replicas)]
        replicas = ReplicaSet(folder, {s: setup.replica_url(s) for s in slots}, allow=config.allow,
                              lease=config.lease, concurrency=config.concurrency)
        return _run(config, folder, setup, replicas, slots, started)
    finally:
        if replicas is not None:
            for replica in replicas.replicas.values():
                replica.signal(signal.SIGKILL)  # left over only if the run failed
        hub.close()
        if setup is not None:
            setup.close()


def _run(config: ChaosConfig, folder: Path, setup: Setup, replicas: ReplicaSet, slots: list[str],
         started: float) -> dict[str, Any]:
    kinds = tuple(config.faults) if config.faults else available_faults(setup, slots)
    plan = plan_faults(config.seed, kinds, config.duration, config.lease, slots, setup)
    (folder / "plan.json").write_text(json.dumps([asdict(f) for f in plan], indent=1))
    observer = RecordingBackend(open_backend(setup.url), HistoryFile(folder / "history", "harness"))
    try:
        replicas.start_all()
        _wait_registered(observer, {r.replica_id for r in replicas.replicas.values()})
        phases: dict[str, float] = {"setup_s": time.monotonic() - started}
        submitted = _under_faults(config, folder, setup, replicas, observer, plan, phases)
        codes = replicas.stop_all()
        final_flows, final_tasks = read_final(observer.inner, list(submitted))
        end = time.monotonic()
    finally:
        observer.close()
    run = {**_describe(config, kinds, folder), "phases": phases, "exit_codes": codes,
           "wall_seconds": end - started, "submitted": len(submitted), "builds": dict(replicas.builds),
           "lives": {rid: list(life) for rid, life in replicas.lives.items()}}
    evidence = load_evidence(folder, final_flows=final_flows, final_tasks=final_tasks,
                             submitted=submitted, lease=config.lease, backend=setup.family, end=end,
                             builds=dict(replicas.builds), lives=run["lives"])
    save_final(folder, run, evidence)
    return _verdict(evidence, run, config, folder)


def _under_faults(config: ChaosConfig, folder: Path, setup: Setup, replicas: ReplicaSet, observer: Backend,
                  plan: list[Fault], phases: dict[str, float]) -> dict[str, str]:
    """Submit the flows while the nemesis works, then wait for them to end;
    returns the flows submitted (id -> workload kind)."""
    submitter = _Submitter(observer, config, lambda: generation_build(replicas.newest_generation()))
    submitter.start()
    fault_start = time.monotonic()
    nemesis = Nemesis(folder, setup, replicas, config.seed, config.lease)
    nemesis.run(plan)
    phases["faults_s"] = time.monotonic() - fault_start
    phases["rolled_out"] = len(nemesis.rolled_out)
    submitter.stop_by = time.monotonic() + config.drain_timeout
    submitter.join()
    phases["drain_s"] = _drain(observer, list(submitter.submitted), config.drain_timeout)
    return submitter.submitted


def _verdict(evidence: Evidence, run: dict[str, Any], config: ChaosConfig, folder: Path) -> dict[str, Any]:
    checking = time.monotonic()
    report = build_report(evidence, run, config.recovery_slack)
    report["run"]["check_s"] = time.monotonic() - checking
    write_report(report, folder / "report.json")
    return report


def _describe(config: ChaosConfig, kinds: tuple[str, ...], folder: Path) -> dict[str, Any]:
    return {"backend": config.backend, "flows": config.flows, "replicas": config.replicas, "seed": config.seed,
            "duration": config.duration, "lease": config.lease, "concurrency": config.concurrency,
            "fault_kinds": list(kinds), "factory": config.factory, "folder": str(folder)}


def recheck(folder: Path, recovery_slack: float = 10.0) -> dict[str, Any]:
    """Check a finished run folder again (e.g. with a newer checker)."""
    evidence, run = load_saved(folder)
    report = build_report(evidence, run, recovery_slack)
    write_report(report, folder / "report.json")
    return report
