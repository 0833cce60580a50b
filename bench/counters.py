"""Coordination requests counted at the server, not in the client.

A client-side counter only sees the calls it was patched into; the server
sees everything a process sends: renewals, polls, pings, scripts. So the
fleet workload reads the servers' own counters:

- **Redis**: ``INFO commandstats``, every command's call count, summed
  without ``info`` (our own reads). Redis 7.0 keeps no count per client, so
  this is the whole server: the workload makes sure only the process being
  measured talks to Redis during a window (``redis_clients`` lists who is
  connected, for the log).
- **ZooKeeper**: the ``cons`` four-letter word lists each connection with
  the packets the server received from it (requests and pings). The
  connections of one process are found by their local ports
  (``/proc/PID/fd`` → socket inodes → ``/proc/net/tcp``), so other clients
  of the same server do not count.
"""

from __future__ import annotations

import os
import re
import socket
from collections import Counter
from pathlib import Path

import redis

__all__ = ["process_ports", "redis_commands", "redis_clients", "zookeeper_packets"]

_CONS_LINE = re.compile(r"/[^\s\[]*:(\d+)\[\d+\]\(queued=\d+,recved=(\d+),sent=(\d+)")


def process_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets process ``pid`` has open."""
    inodes: set[str] = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir() if fds.exists() else []:
        try:
            target = os.readlink(fd)
        except OSError:  # closed while we looked
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _four_letters(hosts: str, word: str, timeout: float = 5.0) -> str:
    host, port = hosts.split(",")[0].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(word.encode())
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    text = b"".join(chunks).decode(errors="replace")
    if "is not executed because it is not in the whitelist" in text:
        raise RuntimeError(f"ZooKeeper at {hosts} does not allow '{word}' (4lw.commands.whitelist)")
    return text


def zookeeper_packets(hosts: str, ports: set[int]) -> tuple[int, frozenset[int]]:
    """Packets the server has received so far on the connections whose
    client port is in ``ports`` (per ``cons``), and which ports those were:
    a connection closed or opened between two readings makes their
    difference meaningless, and the caller can tell."""
    total = 0
    seen: set[int] = set()
    for match in _CONS_LINE.finditer(_four_letters(hosts, "cons")):
        if int(match.group(1)) in ports:
            total += int(match.group(2))
            seen.add(int(match.group(1)))
    return total, frozenset(seen)


def redis_commands(client: redis.Redis) -> Counter[str]:
    """Calls so far per command, without ``info`` (the reads of this very
    counter: Redis counts a command after running it, so ours would show)."""
    stats = client.info("commandstats")
    calls: Counter[str] = Counter()
    for key, value in stats.items():
        name = key.removeprefix("cmdstat_")
        if name != "info":
            calls[name] = int(value["calls"])
    return calls


def redis_clients(client: redis.Redis) -> list[int]:
    """Client ports of everyone connected now (for the log). Not used
    inside a window: ``client list`` would count as a command."""
    return [int(entry["addr"].rsplit(":", 1)[1]) for entry in client.client_list()]
