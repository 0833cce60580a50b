"""The backend under test: its servers, the URLs replicas use, its faults.

``open_setup(spec, folder, hub)`` returns a ``Setup`` for ``spec``:

- ``sqlite``: a database file in the run folder. Backend fault
  ``stall-backend``: another process holds the write lock for a while (as a
  stopped writer would).
- ``zookeeper``: a local ensemble of three members. Faults
  ``restart-backend`` (every member killed, then started again),
  ``kill-member`` (one member down for a while), ``lose-quorum`` (two members
  down past the session timeout). Replicas reach each member through proxies
  of their own, so any of them can be cut off.
- ``redis``: primary + two replicas + three sentinels, with the settings
  deploy/README.md recommends (``min-replicas-to-write 1``,
  ``min-replicas-max-lag 10``). Faults ``restart-backend`` (the primary
  restarted in place, sometimes slower than Sentinel's down-after: then
  Sentinel fails over meanwhile and the old primary comes back as a second
  master until demoted) and ``failover`` (the primary killed, Sentinel
  promotes a replica, the old primary returns as a replica).
  ``redis-bare``: the same without those settings and with one replica (the
  test suite's cluster), to see what the settings buy.
  Even-numbered replicas use the ``redis+sentinel://`` URL; odd-numbered ones
  reach the current primary through a proxy that asks Sentinel where it is
  (as an HAProxy in front of Sentinel would): those can be cut off.
- a backend URL (``zookeeper://…``, ``redis://…``, ``sqlite:///…``): servers
  you run; no server faults, and replicas go through proxies where the URL
  names plain host:port servers.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from flowbaton.testing.chaos.proxy import ProxyHub, Upstream
from flowbaton.testing.servers import ServerError

__all__ = ["BACKEND_FAULTS", "Setup", "open_setup"]

BACKEND_FAULTS = {
    "sqlite": ("stall-backend",),
    "zookeeper": ("restart-backend", "kill-member", "lose-quorum"),
    "redis": ("restart-backend", "failover"),
    "redis-cluster": ("failover", "cut-shard"),
}


def sqlite_writers_blocked(path: str | Path) -> bool:
    """True if some process holds the SQLite file's write lock right now."""
    conn = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


class Setup:
    """A backend for one run. Subclasses start servers and inject faults."""

    kind = "url"
    faults: tuple[str, ...] = ()

    def __init__(self, url: str, hub: ProxyHub | None = None) -> None:
        self.url = url  # direct URL: the harness submits and checks through it
        self.hub = hub
        self._replica_urls: dict[str, str] = {}

    @property
    def family(self) -> str:
        """sqlite, zookeeper, redis (any Redis URL) or memory: what the checker needs to know."""
        scheme = urlsplit(self.url).scheme
        return "redis" if scheme.startswith("redis") else scheme

    def replica_url(self, replica: str) -> str:
        """The URL replica ``replica`` (``r0``, ``r1``...) uses; made once."""
        if replica not in self._replica_urls:
            self._replica_urls[replica] = self._make_replica_url(replica)
        return self._replica_urls[replica]

    def _make_replica_url(self, replica: str) -> str:
        return _proxied_hosts(self.url, replica, self.hub) if self.hub is not None else self.url

    def can_cut(self, replica: str) -> bool:
        return self.hub is not None and self.replica_url(replica) != self.url

    def inject(self, fault: str, rng: random.Random, lease: float) -> dict[str, Any]:
        """Start ``fault``; returns what was done (for the log)."""
        raise ValueError(f"backend {self.kind} has no fault {fault!r}")

    def heal(self, fault: str) -> None:
        """End ``fault``: every server running and serving again."""

    def fault_duration(self, fault: str, rng: random.Random, lease: float) -> float:
        return rng.uniform(lease, 2 * lease)

    def close(self) -> None:
        pass


def _proxied_hosts(url: str, replica: str, hub: ProxyHub | None) -> str:
    """``url`` with each host:port replaced by a proxy of ``replica``'s own;
    the URL itself where that makes no sense (SQLite, Sentinel)."""
    parts = urlsplit(url)
    if hub is None or parts.scheme not in ("zookeeper", "redis"):
        return url
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    ports = []
    for item in hostlist.split(","):
        host, _, port = item.rpartition(":")
        target = (host or item, int(port) if port else (2181 if parts.scheme == "zookeeper" else 6379))
        ports.append(hub.add(replica, _fixed(target)).port)
    hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{hosts}"))


def _fixed(target: tuple[str, int]) -> Upstream:
    return lambda: target


# ------------------------------------------------------------------ sqlite


class SqliteSetup(Setup):
    kind = "sqlite"
    faults = BACKEND_FAULTS["sqlite"]

    def __init__(self, folder: Path) -> None:
        self.path = folder / "flows.db"
        super().__init__(f"sqlite:///{self.path}")
        self._stall: threading.Thread | None = None
        self._release = threading.Event()

    def inject(self, fault: str, rng: random.Random, lease: float) -> dict[str, Any]:
        if fault != "stall-backend":
            return super().inject(fault, rng, lease)
        self._release.clear()
        locked = threading.Event()
        self._stall = threading.Thread(target=self._hold_lock, args=(locked,), daemon=True)
        self._stall.start()
        locked.wait(30)
        return {"locked": locked.is_set()}

    def _hold_lock(self, locked: threading.Event) -> None:
        """A writer stuck inside its transaction: every other writer on the
        host waits out its busy timeout and gets BackendUnavailable."""
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            locked.set()
            self._release.wait()
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def heal(self, fault: str) -> None:
        self._release.set()
        if self._stall is not None:
            self._stall.join(timeout=30)
            self._stall = None

    def writers_blocked(self) -> bool:
        """True if some process holds the write lock right now."""
        return sqlite_writers_blocked(self.path)


# --------------------------------------------------------------- zookeeper


class ZooKeeperSetup(Setup):
    kind = "zookeeper"
    faults = BACKEND_FAULTS["zookeeper"]

    def __init__(self, folder: Path, hub: ProxyHub) -> None:
        from flowbaton.testing.servers.zookeeper import ZooKeeperEnsemble

        self.root = folder / "zookeeper"
        self.ensemble = ZooKeeperEnsemble(self.root)
        self.ensemble.start()
        super().__init__(self.ensemble.url(f"chaos-{uuid.uuid4().hex[:8]}"), hub)
        self._down: list[int] = []

    def inject(self, fault: str, rng: random.Random, lease: float) -> dict[str, Any]:
        members = self.ensemble.members
        if fault == "restart-backend":
            self._down = list(range(len(members)))
        elif fault == "kill-member":
            self._down = [rng.randrange(len(members))]
        elif fault == "lose-quorum":
            self._down = rng.sample(range(len(members)), 2)
        else:
            return super().inject(fault, rng, lease)
        for index in self._down:
            members[index].kill()
        return {"members_down": [members[i].myid for i in self._down]}

    def fault_duration(self, fault: str, rng: random.Random, lease: float) -> float:
        if fault == "restart-backend":
            return rng.uniform(0.5, 2.0)
        if fault == "lose-quorum":
            return rng.uniform(1.5 * lease, 3 * lease)  # past the session timeout
        return rng.uniform(2.0, 6.0)

    def heal(self, fault: str) -> None:
        members = self.ensemble.members
        for index in self._down:
            members[index].start()
        for index in self._down:
            members[index].wait_serving()
        self._down = []

    def close(self) -> None:
        self.ensemble.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------- redis


class RedisSetup(Setup):
    kind = "redis"
    faults = BACKEND_FAULTS["redis"]

    # deploy/README.md's settings for Sentinel: a primary refuses writes it
    # cannot replicate, so a demoted primary that comes back as a master
    # (a split brain) cannot acknowledge writes that the failover then drops.
    NODE_CONFIG = {"min-replicas-to-write": "1", "min-replicas-max-lag": "10"}

    def __init__(self, folder: Path, hub: ProxyHub, *, bare: bool = False) -> None:
        from flowbaton.testing.servers.redis import SentinelCluster, redis_binary

        if bare:  # the test suite's small cluster: one replica, no min-replicas-to-write
            self.cluster = SentinelCluster(redis_binary(), folder / "redis")
        else:
            self.cluster = SentinelCluster(redis_binary(), folder / "redis", replicas=2,
                                           node_config=self.NODE_CONFIG)
        self.namespace = f"chaos{uuid.uuid4().hex[:8]}"
        super().__init__(self.cluster.url(namespace=self.namespace), hub)
        self._victim: Any = None
        self._primary_cache: tuple[float, tuple[str, int]] | None = None
        self._cache_lock = threading.Lock()

    def _make_replica_url(self, replica: str) -> str:
        index = int(replica.lstrip("r") or 0)
        if self.hub is None or index % 2 == 0:
            return self.url
        port = self.hub.add(replica, self._primary).port
        return f"redis://127.0.0.1:{port}/0?{urlencode({'prefix': self.namespace})}"

    def _primary(self) -> tuple[str, int]:
        """Where Sentinel says the primary is (cached for 0.2 s)."""
        with self._cache_lock:
            now = time.monotonic()
            if self._primary_cache is None or now - self._primary_cache[0] > 0.2:
                self._primary_cache = (now, ("127.0.0.1", self.cluster.primary_port()))
            return self._primary_cache[1]

    def inject(self, fault: str, rng: random.Random, lease: float) -> dict[str, Any]:
        if fault == "restart-backend":
            # Back with its own settings, as a primary: if Sentinel failed
            # over meanwhile (a restart slower than down-after), it is a
            # second master until Sentinel demotes it.
            primary = self.cluster.primary()
            primary.stop()
            primary.config.pop("replicaof", None)
            self._victim = primary
            return {"stopped": primary.port}
        if fault == "failover":
            old = self.cluster.kill_primary()
            new = self.cluster.wait_for_failover(old)
            self._victim = next(n for n in self.cluster.nodes if n.port == old)
            self._victim.config["replicaof"] = f"127.0.0.1 {new}"
            return {"killed": old, "promoted": new}
        return super().inject(fault, rng, lease)

    def fault_duration(self, fault: str, rng: random.Random, lease: float) -> float:
        # Restarts shorter and longer than Sentinel's down-after (1 s).
        return rng.uniform(0.2, 2.5) if fault == "restart-backend" else rng.uniform(1.0, 3.0)

    def heal(self, fault: str) -> None:
        """The stopped node comes back on its port; healed once the topology
        has settled (one master, the one Sentinel names, every other node its
        replica in sync), so a split brain counts as part of the fault."""
        if self._victim is not None:
            self._victim.start()
            self._victim = None
        deadline = time.monotonic() + 60.0
        while not self._settled():
            if time.monotonic() > deadline:
                raise ServerError("the Redis nodes did not settle after the fault (see redis/*/server.log)")
            time.sleep(0.2)

    def _settled(self) -> bool:
        try:
            primary = self.cluster.primary_port()
            roles = [self._role(node.port) for node in self.cluster.nodes]
        except Exception:  # roles still changing, a node still loading
            return False
        masters = [port for port, (role, _, _) in zip(self._ports(), roles, strict=True) if role == "master"]
        replicas_ok = all(role == "master" or (upstream == primary and linked) for role, upstream, linked in roles)
        return masters == [primary] and replicas_ok

    def _ports(self) -> list[int]:
        return [node.port for node in self.cluster.nodes]

    @staticmethod
    def _role(port: int) -> tuple[str, int | None, bool]:
        """(role, the primary it follows, replication link up) of one node."""
        import redis

        with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, decode_responses=True) as client:
            info = client.info("replication")
        upstream = info.get("master_port")
        return str(info["role"]), int(upstream) if upstream else None, info.get("master_link_status") == "up"

    def close(self) -> None:
        self.cluster.close()


# ----------------------------------------------------------- redis cluster


class RedisClusterSetup(Setup):
    """Three primaries with a replica each, with the settings deploy/README.md
    asks of a cluster (``min-replicas-to-write 1``: a primary refuses writes
    no replica saw, so one that comes back after its replica took over never
    acknowledges writes the failover then drops; the shard is unwritable
    from its primary's death until the old node rejoins as a replica). The
    replicas reach the nodes directly: a cluster hands its clients node
    addresses (``CLUSTER SLOTS``, ``MOVED``), which a proxy would have to
    rewrite, so there is no replica ``cut`` here; ``cut-shard`` cuts a whole
    shard from everyone instead.

    - ``failover``: SIGKILL a random primary, wait until its replica is
      promoted, and bring the old node back (as a replica) at the heal.
    - ``cut-shard``: SIGSTOP a random primary for half a second to four:
      below ``cluster-node-timeout`` (2 s) its shard just hangs, above it
      the cluster fails it over as if it had died.
    """

    kind = "redis-cluster"
    faults = BACKEND_FAULTS["redis-cluster"]
    NODE_CONFIG = {"min-replicas-to-write": "1", "min-replicas-max-lag": "10"}

    def __init__(self, folder: Path, hub: ProxyHub) -> None:
        from flowbaton.testing.servers.redis_cluster import LocalRedisCluster

        self.cluster = LocalRedisCluster(folder / "redis-cluster", node_config=self.NODE_CONFIG)
        self.namespace = f"chaos{uuid.uuid4().hex[:8]}"
        super().__init__(self.cluster.url(namespace=self.namespace), hub)

    def inject(self, fault: str, rng: random.Random, lease: float) -> dict[str, Any]:
        index = rng.randrange(len(self.cluster.primaries()))
        if fault == "failover":
            old = self.cluster.kill_primary(index)
            new = self.cluster.wait_failover(old)
            return {"killed": old.port, "promoted": new.port}
        if fault == "cut-shard":
            return {"paused": self.cluster.pause_primary(index).port}
        return super().inject(fault, rng, lease)

    def fault_duration(self, fault: str, rng: random.Random, lease: float) -> float:
        return rng.uniform(0.5, 4.0) if fault == "cut-shard" else rng.uniform(1.0, 3.0)

    def heal(self, fault: str) -> None:
        """Every node running again and the cluster settled: three primaries
        serving every slot, each with its replica linked."""
        self.cluster.heal(timeout=60.0)

    def close(self) -> None:
        self.cluster.close()


# -------------------------------------------------------------------- open


def open_setup(spec: str, folder: Path, hub: ProxyHub) -> Setup:
    """The setup ``spec`` names (a backend kind, or a URL of your own)."""
    if spec == "sqlite":
        return SqliteSetup(folder)
    if spec == "zookeeper":
        return ZooKeeperSetup(folder, hub)
    if spec in ("redis", "redis-bare"):
        return RedisSetup(folder, hub, bare=spec == "redis-bare")
    if spec == "redis-cluster":
        return RedisClusterSetup(folder, hub)
    if "://" not in spec:
        raise ValueError(f"--backend must be sqlite, zookeeper, redis, redis-cluster or a backend URL, not {spec!r}")
    return Setup(spec, hub)
