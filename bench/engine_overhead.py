"""Engine overhead: linear flows of no-op tasks, tasks/s and backend writes per task.

    python bench/engine_overhead.py                      # memory:// and a temp sqlite file
    python bench/engine_overhead.py --backend redis://127.0.0.1:6379/0 --sizes 1000

Writes are counted, not estimated: every call of the contract's write methods
(save_task, save_tasks, save_flow; each is one backend round trip) during the
run is counted, and so are the task records they carry (two per task: start,
and result with state; a result rides with the next task's start). For scale: OpenStack TaskFlow
6.5.0 runs 134 no-op tasks/s on memory persistence and 15 on SQLite on this
machine class, with 4 writes per task (docs/design.md, "Targets").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowbaton.backends import Backend, open_backend
from flowbaton.engine import Claim, new_flow_detail, run_flow
from flowbaton.engine.gate import Gate


class Counting:
    """Counts the contract's write calls (each one round trip) and the task
    records they carry, on one backend object."""

    def __init__(self, backend: Backend) -> None:
        self.calls = {"save_task": 0, "save_tasks": 0, "save_flow": 0}
        self.records = 0
        for name in self.calls:
            setattr(backend, name, self._counted(name, getattr(backend, name)))

    def _counted(self, name: str, original: Any) -> Any:
        def call(token: Any, record: Any) -> Any:
            self.calls[name] += 1
            if name != "save_flow":
                self.records += len(record) if name == "save_tasks" else 1
            return original(token, record)

        return call


def one_run(url: str, size: int) -> tuple[float, float, float, int]:
    """(tasks per second, task records written per task, task write calls
    (round trips) per task, flow writes) of one flow of ``size`` no-op tasks."""
    backend = open_backend(url)
    try:
        detail = new_flow_detail("bench.flows:noop_linear", kwargs={"count": size})
        backend.create_flow(detail)
        token = backend.claim(detail.id, "bench", 3600.0)
        counter = Counting(backend)
        started = time.perf_counter()
        report = run_flow(backend, Claim(token, Gate(), time.monotonic()), replica_id="bench", max_workers=1)
        elapsed = time.perf_counter() - started
        assert report.state == "SUCCESS", report.reason
        backend.release(token)
        calls = counter.calls["save_task"] + counter.calls["save_tasks"]
        return size / elapsed, counter.records / size, calls / size, counter.calls["save_flow"]
    finally:
        backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", help="backend URL (repeatable); default memory + sqlite")
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated flow sizes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size; the median is printed")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="fb-bench-")
    urls = args.backend or ["memory://", f"sqlite:///{os.path.join(tmp, 'bench.db')}"]
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'backend':<44} {'tasks':>6} {'tasks/s':>9} {'records/task':>12} {'writes/task':>11} {'flow writes':>11}")
    for url in urls:
        rates: dict[int, float] = {}
        for size in sizes:
            runs = [one_run(url, size) for _ in range(args.repeat)]
            rates[size] = statistics.median(r[0] for r in runs)
            records = statistics.median(r[1] for r in runs)
            writes = statistics.median(r[2] for r in runs)
            flow_writes = max(r[3] for r in runs)
            print(f"{url[:44]:<44} {size:>6} {rates[size]:>9.0f} {records:>12.3f} {writes:>11.3f} {flow_writes:>11}")
        if len(sizes) > 1:
            flat = rates[sizes[-1]] / rates[sizes[0]]
            print(f"{'':<44} tasks/s at {sizes[-1]} is {flat:.0%} of tasks/s at {sizes[0]}")


if __name__ == "__main__":
    main()
