"""What the servers and the machine did during a run, read from outside.

Commands are read per server (``INFO commandstats`` on a plain client to
that node: a cluster client would answer for a node of its choosing), so
the cluster workload can tell how the load spread over the primaries. CPU
time is read from ``/proc``: each redis-server's (found by the
``process_id`` it reports, if that process runs here and is a
redis-server: an external server or a container's has no pid of ours),
the replicas', this process's, and the whole machine's busy and total
core-seconds. Comparing them says where a run's time went: a server near
100 % of one core is the bottleneck (Redis runs commands on one thread);
a machine near 100 % of every core means the CPU is, whoever uses it.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .counters import redis_commands

__all__ = ["Server", "Snapshot", "snapshot", "process_cpu"]

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Server:
    """One redis-server: a name for the table, a role ("primary",
    "replica", "single"), a plain client to that node, its local pid."""

    name: str
    role: str
    client: redis.Redis
    pid: int | None

    @classmethod
    def open(cls, name: str, role: str, host: str, port: int) -> Server:
        client = redis.Redis(host=host, port=port, socket_timeout=5)
        return cls(name, role, client, _local_pid(client))


def _local_pid(client: redis.Redis) -> int | None:
    """The server's pid if it is a redis-server process on this machine."""
    pid = int(client.info("server")["process_id"])
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return pid if comm.startswith("redis-server") else None


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None: gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name, in parentheses, may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15


def _machine_cpu() -> tuple[float, float]:
    """Busy and total core-seconds of the machine so far (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


def _total(values: Iterable[float | None]) -> float | None:
    known = list(values)
    return None if any(v is None for v in known) else sum(v for v in known if v is not None)


@dataclass
class Snapshot:
    """Counters at one moment; ``later - earlier`` is what happened between."""

    commands: dict[str, Counter[str]] = field(default_factory=dict)  # server name -> calls per command
    server_cpu: dict[str, float | None] = field(default_factory=dict)  # server name -> CPU seconds
    replica_cpu: float | None = 0.0  # the replica processes together
    bench_cpu: float = 0.0  # this process (the submitter and the poller)
    machine: tuple[float, float] = (0.0, 0.0)  # busy, total core-seconds

    def __sub__(self, earlier: Snapshot) -> Snapshot:
        return Snapshot(
            {name: calls - earlier.commands[name] for name, calls in self.commands.items()},
            {name: _minus(cpu, earlier.server_cpu[name]) for name, cpu in self.server_cpu.items()},
            _minus(self.replica_cpu, earlier.replica_cpu), self.bench_cpu - earlier.bench_cpu,
            (self.machine[0] - earlier.machine[0], self.machine[1] - earlier.machine[1]))

    def total_commands(self) -> int:
        return sum(sum(calls.values()) for calls in self.commands.values())


def _minus(later: float | None, earlier: float | None) -> float | None:
    return None if later is None or earlier is None else later - earlier


def snapshot(servers: Sequence[Server], replica_pids: Sequence[int]) -> Snapshot:
    """Every counter now. Only primaries (and a single server) are asked for
    commands: a cluster replica only replays its primary's writes."""
    times = os.times()
    return Snapshot(
        {s.name: redis_commands(s.client) for s in servers if s.role != "replica"},
        {s.name: None if s.pid is None else process_cpu(s.pid) for s in servers},
        _total(process_cpu(pid) for pid in replica_pids), times.user + times.system, _machine_cpu())
