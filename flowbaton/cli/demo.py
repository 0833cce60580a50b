"""``flowbaton demo``: the product's promise, told in under 30 seconds.

On a temporary SQLite file, two replica processes wait for work. We submit
an eight-step flow, kill the replica running it with SIGKILL in the middle
of a step, and watch the other replica take the flow over once the lease
runs out, re-run only the step that was in doubt, and finish. The flow's
timeline, as ``flowbaton show --timeline`` draws it, ends the story;
``--keep DIR`` keeps the store to look at it again (``show``, ``ui``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..backends import open_backend
from ..backends.base import Backend
from ..backends.states import RUNNING, SUCCESS, TERMINAL_FLOW_STATES
from ..coordinator.replica import Coordinator
from ..demo.flows import STEPS
from ..ops import query
from ..ops.timeline import timeline
from .timeline import for_terminal

__all__ = ["run_demo"]

LEASE = 2.0
FACTORY = "flowbaton.demo.flows:provision"
KILL_AT_STEP = 4
NAMES = ("replica-A", "replica-B")


def say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(keep: Path | None = None) -> int:
    """Tell the story; ``keep``: on a store in that folder, left there."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return _run_in(keep.resolve(), kept=True)
    with tempfile.TemporaryDirectory(prefix="flowbaton-demo-") as tmp:
        return _run_in(Path(tmp), kept=False)


def _run_in(folder: Path, *, kept: bool) -> int:
    demo = Demo(folder)
    try:
        status = demo.run()
    finally:
        demo.shutdown()
    if kept:
        say(f"\n  The store is kept: flowbaton --backend {demo.url} show {demo.flow_id} --timeline")
        say(f"                    flowbaton --backend {demo.url} ui")
    return status


class Demo:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.url = f"sqlite:///{folder / 'demo.db'}"
        self.ledger = folder / "ledger.txt"
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.backend: Backend = open_backend(self.url)
        self.flow_id = ""

    # -------------------------------------------------------------- story

    def run(self) -> int:
        say(f"flowbaton demo: two replicas share {self.url} (lease {LEASE:g}s).")
        for name in NAMES:
            self.spawn(name)
        self.until(lambda: len(self.backend.list_replicas()) == len(NAMES), 20, "the replicas to start")
        say(f"  {' and '.join(NAMES)} are up. Submitting an {len(STEPS)}-step flow...")
        flow_id = Coordinator(self.backend).submit(FACTORY, inputs={"ledger": str(self.ledger), "pause": 0.6})
        self.flow_id = flow_id
        victim = self.wait_for_kill_point(flow_id)
        killed_at = self.kill(victim)
        self.until(lambda: self.backend.load_flow(flow_id).state in TERMINAL_FLOW_STATES, 30, "the flow to end")
        return self.summary(flow_id, victim, killed_at)

    def wait_for_kill_point(self, flow_id: str) -> str:
        """The owner, once step KILL_AT_STEP runs (earlier steps all done)."""
        def ready() -> bool:
            task = self.backend.load_tasks(flow_id).get(f"step-{KILL_AT_STEP}")
            return task is not None and task.state == RUNNING

        self.until(ready, 20, f"step {KILL_AT_STEP} to start")
        time.sleep(0.2)  # let the step visibly get going
        claim = self.backend.current_claim(flow_id)
        if claim is None or claim.owner not in self.procs:
            raise RuntimeError(f"demo: no replica owns flow {flow_id} (claim {claim})")
        return claim.owner

    def kill(self, name: str) -> float:
        say(f"\n  >>> kill -9 {name} (pid {self.procs[name].pid}) in the middle of step {KILL_AT_STEP} <<<")
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()
        killed_at = time.time()
        survivor = next(n for n in NAMES if n != name)
        say(f"  {name} is dead. Its claim expires within the lease; {survivor} then takes the flow over...\n")
        return killed_at

    def summary(self, flow_id: str, victim: str, killed_at: float) -> int:
        flow = self.backend.load_flow(flow_id)
        runs = [line.split() for line in self.ledger.read_text().splitlines()]  # task attempt replica
        resumed = min((t.started_at or killed_at for t in self.backend.load_tasks(flow_id).values()
                       if t.owner != victim), default=killed_at)
        say(f"\n  Flow {flow_id} ended {flow.state}.")
        say(f"  The survivor started its first step {resumed - killed_at:.1f}s after the kill (lease {LEASE:g}s).")
        before = [r for r in runs if _number(r[0]) < KILL_AT_STEP]
        once = len(before) == KILL_AT_STEP - 1 and all(r[2] == victim for r in before)
        say(f"  Steps 1-{KILL_AT_STEP - 1} ran " + (f"once each, on {victim}: none was repeated." if once
                                                    else f"{len(before)} times in all: NOT as promised."))
        reruns = sorted({r[0] for r in runs if int(r[1]) > 1})
        say(f"  Run again after the takeover (tasks are at-least-once): {', '.join(reruns) or 'none'}.")
        ok = flow.state == SUCCESS and once and reruns == [f"step-{KILL_AT_STEP}"] and len(runs) == len(STEPS) + 1
        say("  Demo OK." if ok else "  Demo did NOT go as expected: see above.")
        say("\n  What the records say (flowbaton show --timeline):\n")
        say(for_terminal(timeline(query.show(self.backend, flow_id))))
        return 0 if ok else 1

    # ----------------------------------------------------------- plumbing

    def spawn(self, name: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (_package_root(), os.environ.get("PYTHONPATH"))
                                                            if p), PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "flowbaton", "--backend", self.url, "replica", "--allow",
               "flowbaton.demo.flows", "--lease", str(LEASE), "--replica-id", name, "--concurrency", "1"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.procs[name] = proc
        _follow(proc.stdout, say)
        _follow(proc.stderr, lambda line: self.narrate(name, line))

    def narrate(self, name: str, line: str) -> None:
        """Replica log lines worth telling: claims (with their epoch) and errors."""
        epoch = line.rsplit("epoch", 1)[-1].strip().rstrip("]")
        if "claimed flow" in line:
            say(f"  {name} claimed the flow (fencing epoch {epoch})")
        elif "took over flow" in line:
            previous = line.split(" from ", 1)[1].split(",", 1)[0]
            say(f"  {name} took the flow over from {previous} (fencing epoch {epoch}): "
                "finished steps are reused, the one in doubt runs again")
        elif " ERROR " in line or "Traceback" in line:
            say(f"  {name}: {line}")

    def until(self, check: Callable[[], object], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not check():
            if time.monotonic() > end:
                raise RuntimeError(f"demo: timed out waiting for {what}")
            time.sleep(0.05)

    def shutdown(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.backend.close()


def _number(task_id: str) -> int:
    return int(task_id.split("-")[1])


def _package_root() -> str:
    """The folder from which ``import flowbaton`` finds this very package
    (this file is ``flowbaton/cli/demo.py`` below it)."""
    return str(Path(__file__).resolve().parents[2])


def _follow(stream: IO[str] | None, out: Callable[[str], None]) -> None:
    def pump() -> None:
        assert stream is not None
        for line in stream:
            out(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
