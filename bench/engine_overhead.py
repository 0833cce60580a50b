"""Engine overhead: linear flows of no-op tasks, tasks/s and backend writes per task.

    python bench/engine_overhead.py                      # memory:// and a temp sqlite file
    python bench/engine_overhead.py --backend redis://127.0.0.1:6379/0 --sizes 1000

Writes are counted, not estimated: every call of the contract's write methods
(save_task, save_flow) during the run is counted. For scale: OpenStack TaskFlow
6.5.0 runs 134 no-op tasks/s on memory persistence and 15 on SQLite on this
machine class, with 4 writes per task (issue 2).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from flowbaton.backends import Backend, open_backend
from flowbaton.engine import new_flow_detail, run_flow


class Counting:
    """Counts the contract's write calls on one backend object."""

    def __init__(self, backend: Backend) -> None:
        self.writes = {"save_task": 0, "save_flow": 0}
        for name in self.writes:
            setattr(backend, name, self._counted(name, getattr(backend, name)))

    def _counted(self, name: str, original: Any) -> Any:
        def call(*args: Any) -> Any:
            self.writes[name] += 1
            return original(*args)

        return call


def one_run(url: str, size: int) -> tuple[float, float, int]:
    """(tasks per second, task writes per task, flow writes) of one flow of
    ``size`` no-op tasks."""
    backend = open_backend(url)
    try:
        detail = new_flow_detail("noop_flows:linear", kwargs={"count": size})
        backend.create_flow(detail)
        token = backend.claim(detail.id, "bench", 3600.0)
        counter = Counting(backend)
        started = time.perf_counter()
        report = run_flow(backend, token, replica_id="bench", max_workers=1)
        elapsed = time.perf_counter() - started
        assert report.state == "SUCCESS", report.reason
        backend.release(token)
        return size / elapsed, counter.writes["save_task"] / size, counter.writes["save_flow"]
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
    print(f"{'backend':<44} {'tasks':>6} {'tasks/s':>9} {'writes/task':>11} {'flow writes':>11}")
    for url in urls:
        rates: dict[int, float] = {}
        for size in sizes:
            runs = [one_run(url, size) for _ in range(args.repeat)]
            rates[size] = statistics.median(r for r, _, _ in runs)
            writes = statistics.median(w for _, w, _ in runs)
            flow_writes = max(f for _, _, f in runs)
            print(f"{url[:44]:<44} {size:>6} {rates[size]:>9.0f} {writes:>11.3f} {flow_writes:>11}")
        if len(sizes) > 1:
            flat = rates[sizes[-1]] / rates[sizes[0]]
            print(f"{'':<44} tasks/s at {sizes[-1]} is {flat:.0%} of tasks/s at {sizes[0]}")


if __name__ == "__main__":
    main()
