"""Coordination requests per second of one replica, counted at the server.

One replica per backend (a flowbaton replica / a TaskFlow non-blocking
conductor), lease 10 s, either idle (no flows) or busy (holding N flows
whose one task sleeps for an hour). Once the replica is settled, the
servers' counters (``counters.py``) are read at the start and the end of a
window; the figure is the difference over the window's length.

What counts: on ZooKeeper, packets the server received on the replica's
own connections (requests and pings); on Redis, every command the server
ran (Redis 7.0 keeps no count per client: nothing else talks to Redis in
the window) plus the replica's ZooKeeper packets, if it has any (TaskFlow
on its Redis jobboard keeps its flow state in ZooKeeper persistence).

Both backends are measured in the same window: the ZooKeeper figure counts
one process's connections, and the ZooKeeper replica never talks to Redis.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import redis

from .counters import process_ports, redis_clients, redis_commands, zookeeper_packets
from .fleet_run import Replicas, wait_running
from .fleet_sides import FleetSide, Place
from .servers import Servers

__all__ = ["Reading", "measure"]

LEASE = 10.0
HOLD = 3600.0  # seconds a busy replica's tasks sleep: far beyond any window
SETTLE = 5.0  # seconds after start-up (or the last claim) before the window opens
CLAIM_TIMEOUT = 600.0


@dataclass
class Reading:
    """One replica's requests over a window."""

    requests: float = 0.0
    seconds: float = 0.0
    redis: Counter[str] = field(default_factory=Counter)  # per command (Redis only)
    zookeeper: float = 0.0  # the ZooKeeper packets among ``requests``
    strangers: int = 0  # other Redis clients connected as the window opened (should be 0)
    reconnected: bool = False  # the replica's ZooKeeper connections changed within the window

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


class _Probe:
    """Counts one replica process's requests at the servers."""

    def __init__(self, servers: Servers, backend: str, pid: int) -> None:
        self.servers = servers
        self.backend = backend
        self.pid = pid
        host, port = servers.redis_address
        self.client = redis.Redis(host=host, port=port) if backend == "redis" else None

    def snapshot(self) -> tuple[int, frozenset[int], Counter[str]]:
        packets, connections = zookeeper_packets(self.servers.zk_hosts, process_ports(self.pid))
        commands = redis_commands(self.client) if self.client is not None else Counter()
        return packets, connections, commands

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _window(probes: dict[str, _Probe], seconds: float) -> dict[str, Reading]:
    before = {backend: probe.snapshot() for backend, probe in probes.items()}
    opened = time.monotonic()
    time.sleep(seconds)
    after = {backend: probe.snapshot() for backend, probe in probes.items()}
    elapsed = time.monotonic() - opened
    readings = {}
    for backend in probes:
        packets = after[backend][0] - before[backend][0]
        commands = after[backend][2] - before[backend][2]
        readings[backend] = Reading(packets + sum(commands.values()), elapsed, commands, packets,
                                    reconnected=after[backend][1] != before[backend][1])
    return readings


def _submit_all(side: FleetSide, places: dict[str, Place], flows: int) -> None:
    """Submit to every place at once (TaskFlow posts slowly: one poster each)."""
    errors: list[BaseException] = []

    def submit(place: Place) -> None:
        try:
            side.submit(place, flows, 1, HOLD)
        except BaseException as err:  # re-raised below, in the caller's thread
            errors.append(err)

    threads = [threading.Thread(target=submit, args=(place,)) for place in places.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def measure(side: FleetSide, servers: Servers, backends: list[str], flows: int,
            window: float) -> dict[str, Reading]:
    """Start one replica per backend holding ``flows`` flows (0: idle),
    then read every replica's requests over the same window."""
    places = {backend: Place(backend, LEASE, servers.scratch(f"{side.name}-coord-{backend}"))
              for backend in backends}
    groups = {backend: Replicas(side, place) for backend, place in places.items()}
    probes: dict[str, _Probe] = {}
    try:
        for group in groups.values():
            group.start("r1", max(flows, 1))
        for group in groups.values():
            group.wait_ready(1)
        if flows:
            _submit_all(side, places, flows)
            for place in places.values():
                wait_running(place, flows, CLAIM_TIMEOUT)
        time.sleep(SETTLE)
        for backend, group in groups.items():
            group.check_alive()
            probes[backend] = _Probe(servers, backend, group.pid("r1"))
        others = _strangers(servers, [group.pid("r1") for group in groups.values()])
        readings = _window(probes, window)
        for reading in readings.values():
            reading.strangers = len(others)
        return readings
    finally:
        for probe in probes.values():
            probe.close()
        for group in groups.values():
            group.close()


def _strangers(servers: Servers, pids: list[int]) -> list[int]:
    """Redis client ports that belong to none of ``pids`` nor to us: any
    would make the Redis figure count more than the replica."""
    host, port = servers.redis_address
    client = redis.Redis(host=host, port=port)
    try:
        client.ping()  # our own connection open first, so its port is among ours
        known = set().union(process_ports(os.getpid()), *(process_ports(pid) for pid in pids))
        return [port for port in redis_clients(client) if port not in known]
    finally:
        client.close()
