"""A real Redis Cluster on loopback (three primaries, one replica each), with
fault injectors.

Where a cluster comes from (``start_best_cluster``): the ``redis+cluster://``
URL in ``FLOWBATON_TEST_REDIS_CLUSTER`` (no fault injection), else six local
``redis-server`` processes joined by ``redis-cli --cluster create``. There is
no container variant: cluster nodes tell clients their own addresses (in
``CLUSTER SLOTS`` and ``MOVED``), which a Docker port mapping would hide.

With ``tls`` (``TLSFiles``) the nodes speak TLS only: no plain port, TLS
on the cluster bus and for replication too, and the fixture's own clients,
``redis-cli`` and ``url()`` (``rediss+cluster://``) use it as well.

Every wait here polls the nodes until they agree, against a deadline, and
names what was still missing when it gives up: a cluster is "settled" when
every live node says ``cluster_state:ok`` with all 16384 slots served, all
live nodes see the same roles, primaries and slots for each other without
failure flags, every live primary serves slots and every live replica's link
to its primary is up. Failover and restart wait for exactly that state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import redis
from redis.cluster import ClusterNode, RedisCluster

from flowbaton.testing.servers import ServerError, fail, free_port
from flowbaton.testing.servers.redis import LocalRedis, with_query

__all__ = [
    "ENV_URL",
    "NODE_CONFIG",
    "ExternalRedisCluster",
    "LocalRedisCluster",
    "Node",
    "ServerError",
    "TLSFiles",
    "start_best_cluster",
]

ENV_URL = "FLOWBATON_TEST_REDIS_CLUSTER"
SLOTS = 16384
# On top of LocalRedis's BASE_CONFIG (append-only file, noeviction). A 2 s
# node timeout makes a failover take about 3-4 s instead of the default 15+ s.
NODE_CONFIG = {
    "cluster-enabled": "yes",
    "cluster-config-file": "nodes.conf",  # in the node's own folder (its ``dir``)
    "cluster-node-timeout": "2000",
    "appendfsync": "everysec",
    "protected-mode": "no",
}
_FAILED = frozenset({"fail", "fail?", "handshake", "noaddr"})


class Node(NamedTuple):
    """A cluster node by address: how tests name the node to kill or restart."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class _Line:
    """One line of ``CLUSTER NODES``: one node as the answering node sees it."""

    id: str
    node: Node
    flags: frozenset[str]
    primary_id: str  # "-" for a primary
    connected: bool
    slots: tuple[str, ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def healthy(self) -> bool:
        return self.connected and not self.flags & _FAILED

    @property
    def first_slot(self) -> int:
        return min(int(s.split("-")[0]) for s in self.slots if not s.startswith("["))


def _parse_line(text: str) -> _Line:
    # <id> <ip:port@cport[,hostname]> <flags> <primary> <ping> <pong> <epoch> <link> <slot>...
    fields = text.split()
    host, _, port = fields[1].split("@")[0].rpartition(":")
    return _Line(fields[0], Node(host, int(port)), frozenset(fields[2].split(",")), fields[3],
                 fields[7] == "connected", tuple(sorted(fields[8:])))


def _read_lines(client: redis.Redis) -> list[_Line]:
    text = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    text = text.decode() if isinstance(text, bytes) else text
    return [_parse_line(line) for line in text.splitlines() if line.strip()]


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    text = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
    text = text.decode() if isinstance(text, bytes) else text
    return dict(line.strip().split(":", 1) for line in text.splitlines() if ":" in line)


def _primaries(lines: Iterable[_Line]) -> list[_Line]:
    """Primaries serving slots, in slot order: index 0 serves slot 0."""
    return sorted((line for line in lines if line.is_primary and line.slots), key=lambda line: line.first_slot)


def _replicas(lines: list[_Line]) -> list[_Line]:
    """Replicas not marked failed, grouped by their primary's slot order."""
    order = {line.id: index for index, line in enumerate(_primaries(lines))}
    found = [line for line in lines if "slave" in line.flags and not line.flags & _FAILED]
    return sorted(found, key=lambda line: (order.get(line.primary_id, len(order)), line.node.port))


def _summary(lines: list[_Line], live: list[Node]) -> dict[Node, tuple[str, str, tuple[str, ...]]] | str:
    """Each live node's id, primary's id ("-" for a primary) and slots in
    this view, or what is wrong with the view."""
    seen = {line.node: line for line in lines}
    summary = {}
    for node in live:
        line = seen.get(node)
        if line is None or not line.healthy:
            return f"{node} as {sorted(line.flags) if line else 'unknown'}"
        if line.is_primary and not line.slots:
            return f"{node} as a primary without slots"
        summary[node] = (line.id, line.primary_id, line.slots)
    return summary


def _cluster_client(seeds: Iterable[Node], **options: Any) -> RedisCluster:
    nodes = [ClusterNode(node.host, node.port) for node in seeds]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes, socket_timeout=5, **options)


def _wait(check: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll ``check`` (None when done, else what is still missing) until done;
    ``ServerError`` naming ``what`` and the last thing missing after ``timeout``."""
    deadline = time.monotonic() + timeout
    while (problem := check()) is not None:
        if time.monotonic() >= deadline:
            fail(f"timed out after {timeout:.0f}s waiting for {what}: {problem}")
        time.sleep(0.05)


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a TLS-only cluster: ``cert`` and its ``key``, signed by
    ``ca``, which every node serves to its clients and presents on the
    cluster bus and to its primary; clients need only trust ``ca``."""

    ca: Path
    cert: Path
    key: Path

    def node_config(self) -> dict[str, str]:
        """Settings of every node (its ``tls-port`` is its port: ``_NodeServer``)."""
        files = {"tls-cert-file": self.cert, "tls-key-file": self.key, "tls-ca-cert-file": self.ca}
        return {"port": "0", **{key: str(path) for key, path in files.items()},
                "tls-cluster": "yes", "tls-replication": "yes", "tls-auth-clients": "no"}

    def client_options(self) -> dict[str, Any]:
        """redis-py keyword arguments of a client that trusts ``ca``."""
        return {"ssl": True, "ssl_ca_certs": str(self.ca)}

    def cli_options(self) -> list[str]:
        return ["--tls", "--cacert", str(self.ca)]


class _NodeServer(LocalRedis):
    """A LocalRedis with its cluster bus on a free port of its own: Redis's
    default (port + 10000) does not exist above port 55535, where free
    ephemeral ports often are. A restart keeps the port the others know.

    With ``tls`` its port is a TLS port (its plain one is closed), so it is
    PINGed over TLS while it starts."""

    def __init__(self, binary: str, home: Path, config: dict[str, str], tls: TLSFiles | None = None) -> None:
        super().__init__(binary, home, {**config, **(tls.node_config() if tls else {})})
        self.tls = tls

    def _spawn(self, extra_args: list[str]) -> None:
        if not self._started_once:
            self.config["cluster-port"] = str(free_port())
        if self.tls is not None:
            # After ``port <p>`` in redis.conf: "port 0" (node_config) wins, closing it.
            self.config["tls-port"] = str(self.port)
        super()._spawn(extra_args)

    def start(self, deadline: float = 15.0, extra_args: list[str] | None = None) -> None:
        """``LocalRedis.start`` (another free port if ours was taken before
        the first start), waiting for a PING over TLS on a TLS node."""
        if self.tls is None:
            super().start(deadline, extra_args)
            return
        if self.running():
            return
        for _ in range(1 if self._started_once else 3):
            self._spawn(extra_args or [])
            problem = self._await_tls_ping(self.tls, time.monotonic() + deadline)
            if problem is None:
                self._started_once = True
                return
            if "Address already in use" not in problem or self._started_once:
                break
            self.close()  # it lost the bind and is exiting: reap it before trying another port
            self.port = free_port()
        fail(problem or "redis-server did not start")

    def _await_tls_ping(self, tls: TLSFiles, deadline: float) -> str | None:
        """None once this process answers PING over TLS, else what went wrong
        (another process answering on our port means the port was taken)."""
        last: Exception | None = None
        while time.monotonic() < deadline:
            if problem := self._died():
                return problem
            try:
                with redis.Redis(host=self.host, port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5,
                                 **tls.client_options()) as client:
                    pid = int(client.info("server")["process_id"])
                assert self.proc is not None
                return None if pid == self.proc.pid else f"Address already in use: another redis-server on {self.port}"
            except redis.RedisError as err:
                last = err
            time.sleep(0.05)
        return f"redis on {self.host}:{self.port} did not answer PING over TLS in time: {last}"


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        fail(f"no {name} to start a local Redis Cluster: set {ENV_URL} to a redis+cluster:// URL "
             f"or install the Debian package {package}")
    return found


class LocalRedisCluster:
    """``primaries`` local primaries with ``replicas_per_primary`` replicas
    each, started, joined and settled by the constructor (``ServerError`` on
    failure, with every process it started killed); with ``tls``, TLS only
    (module docstring)."""

    def __init__(self, home: Path, primaries: int = 3, replicas_per_primary: int = 1, *,
                 binary: str | None = None, deadline: float = 30.0,
                 node_config: dict[str, str] | None = None, tls: TLSFiles | None = None) -> None:
        if primaries < 3:
            fail("redis-cli --cluster create needs at least 3 primaries")
        self.home = home
        self.replicas_per_primary = replicas_per_primary
        count = primaries * (1 + replicas_per_primary)
        server_binary = binary or _binary("redis-server", "redis-server")
        self._cli = _binary("redis-cli", "redis-tools")
        config = {**NODE_CONFIG, **(node_config or {})}
        self.tls = tls
        self._tls_options = tls.client_options() if tls else {}
        self._servers = [_NodeServer(server_binary, home / f"node{i}", config, tls) for i in range(count)]
        self._clients: dict[Node, redis.Redis] = {}
        self._heirs: dict[Node, list[Node]] = {}  # a killed primary -> its replicas then
        try:
            self._start(primaries, deadline)
        except BaseException:
            self.close()
            raise

    def _start(self, primaries: int, deadline: float) -> None:
        end = time.monotonic() + deadline
        for server in self._servers:
            server.start(deadline=max(end - time.monotonic(), 1.0))
        self._create(end)
        replicas = primaries * self.replicas_per_primary

        def ready() -> str | None:
            problem = self._unsettled()
            if problem is None and (len(self.primaries()), len(self.replicas())) != (primaries, replicas):
                problem = f"{len(self.primaries())} primaries and {len(self.replicas())} replicas"
            return problem

        _wait(ready, max(end - time.monotonic(), 1.0), "the new cluster to settle")

    def _create(self, end: float) -> None:
        """``redis-cli --cluster create``: slots spread evenly, replicas assigned."""
        tls = self.tls.cli_options() if self.tls else []
        command = [self._cli, *tls, "--cluster", "create", *(str(self._node(s)) for s in self._servers),
                   "--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=max(end - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired as err:
            fail(f"redis-cli --cluster create did not finish: {err.stdout!r}")
        if done.returncode != 0:
            fail(f"redis-cli --cluster create failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")

    # ------------------------------------------------------------- views

    @staticmethod
    def _node(server: LocalRedis) -> Node:
        return Node(server.host, server.port)

    def _server(self, node: Node) -> LocalRedis:
        for server in self._servers:
            if self._node(server) == node:
                return server
        fail(f"{node} is not a node of this cluster")

    def _client(self, node: Node) -> redis.Redis:
        """A client for one node alone (no redirections; TLS with ``tls``),
        kept (its pool reconnects after a restart)."""
        if node not in self._clients:
            self._clients[node] = redis.Redis(host=node.host, port=node.port, socket_timeout=1,
                                              socket_connect_timeout=1, decode_responses=True,
                                              **self._tls_options)
        return self._clients[node]

    def _live(self) -> list[Node]:
        return [self._node(server) for server in self._servers if server.running()]

    def _lines(self) -> list[_Line]:
        """``CLUSTER NODES`` from the first live node that answers."""
        for node in self._live():
            try:
                return _read_lines(self._client(node))
            except redis.RedisError:
                continue
        fail("no node of the cluster answers CLUSTER NODES")

    def primaries(self) -> list[Node]:
        """The primaries serving slots, as the cluster sees them now, in slot
        order (index 0 serves slot 0; a promoted replica takes its primary's index)."""
        return [line.node for line in _primaries(self._lines())]

    def replicas(self) -> list[Node]:
        """The replicas not marked failed, in their primaries' order."""
        return [line.node for line in _replicas(self._lines())]

    # ----------------------------------------------------------- settling

    def _unsettled(self) -> str | None:
        """None when the cluster is settled (module docstring), else why not."""
        live = self._live()
        if not live:
            return "no node is running"
        summaries = {}
        for node in live:
            summary = self._view(node, live)
            if isinstance(summary, str):
                return summary
            summaries[node] = summary
        first, *others = live
        differs = next((node for node in others if summaries[node] != summaries[first]), None)
        if differs:
            return f"{first} and {differs} disagree on roles or slots"
        return self._links_down([node for node, (_, primary, _) in summaries[first].items() if primary != "-"])

    def _view(self, node: Node, live: list[Node]) -> dict[Node, tuple[str, str, tuple[str, ...]]] | str:
        """``node``'s view of the live nodes (``_summary``), or why it is not a settled one."""
        try:
            info = _cluster_info(self._client(node))
            summary = _summary(_read_lines(self._client(node)), live)
        except redis.RedisError as err:
            return f"{node}: {err}"
        state, slots_ok = info.get("cluster_state"), info.get("cluster_slots_ok")
        if (state, slots_ok) != ("ok", str(SLOTS)):
            return f"{node} says cluster_state:{state} with {slots_ok} slots ok"
        return f"{node} sees {summary}" if isinstance(summary, str) else summary

    def _links_down(self, replicas: list[Node]) -> str | None:
        for node in replicas:
            try:
                status = self._client(node).info("replication").get("master_link_status")
            except redis.RedisError as err:
                return f"{node}: {err}"
            if status != "up":
                return f"replica {node}: master_link_status:{status}"
        return None

    def wait_settled(self, timeout: float = 30.0) -> None:
        _wait(self._unsettled, timeout, "the cluster to settle")

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Until every live replica has processed all its primary has written
        so far (offsets, not WAIT: WAIT only counts the asking connection's writes)."""
        live = self._live()
        targets = {line.id: int(self._client(line.node).info("replication")["master_repl_offset"])
                   for line in _primaries(self._lines()) if line.node in live}

        def behind() -> str | None:
            for line in _replicas(self._lines()):
                if line.node not in live:
                    continue
                done = int(self._client(line.node).info("replication").get("slave_repl_offset", -1))
                if line.primary_id in targets and done < targets[line.primary_id]:
                    return f"replica {line.node} at offset {done} of {targets[line.primary_id]}"
            return None

        _wait(behind, timeout, "the replicas to catch up")

    # ------------------------------------------------------------- faults

    def kill_primary(self, index: int = 0) -> Node:
        """SIGKILL the primary at ``index`` (slot order, see ``primaries``);
        returns it. Its replicas are remembered for ``wait_failover``."""
        lines = self._lines()
        primary = _primaries(lines)[index]
        heirs = [line.node for line in lines if line.primary_id == primary.id]
        self._server(primary.node).kill()
        self._heirs[primary.node] = heirs
        return primary.node

    def wait_failover(self, old: Node, timeout: float = 30.0) -> Node:
        """Until a replica of ``old`` (killed by ``kill_primary``) serves its
        slots and the cluster is settled again; returns the promoted node."""
        heirs = self._heirs.get(old)
        if heirs is None:
            fail(f"{old} was not killed by kill_primary")

        def promoted() -> str | None:
            problem = self._unsettled()
            if problem is None and not set(heirs) & set(self.primaries()):
                problem = f"no replica of {old} ({', '.join(map(str, heirs))}) is a primary yet"
            return problem

        _wait(promoted, timeout, f"a replica of {old} to take over")
        return next(node for node in self.primaries() if node in heirs)

    def pause_primary(self, index: int = 0) -> Node:
        """SIGSTOP the primary at ``index``: its shard answers nobody (its
        clients' connections hang) until ``resume``; one paused for longer
        than ``cluster-node-timeout`` is failed over like a dead one."""
        primary = _primaries(self._lines())[index]
        self._server(primary.node).pause()
        return primary.node

    def resume(self, node: Node, timeout: float = 30.0) -> None:
        """SIGCONT a paused node and wait until the cluster is settled (a
        primary failed over meanwhile rejoins as a replica)."""
        self._server(node).resume()
        _wait(self._unsettled, timeout, f"{node} to rejoin the cluster")

    def restart(self, node: Node, timeout: float = 30.0) -> None:
        """Start a killed node again, same port and folder, so with its own
        ``nodes.conf``, and wait until the cluster is settled with it in: a
        primary whose replica took over in the meantime rejoins as a replica."""
        self._server(node).start()
        self._heirs.pop(node, None)
        _wait(self._unsettled, timeout, f"{node} to rejoin the cluster")

    def heal(self, timeout: float = 30.0) -> None:
        """Resume every paused node and restart every killed one; a test that
        breaks the session's cluster calls this last, so the next test finds
        three primaries and their replicas."""
        for server in self._servers:
            server.resume_if_paused()
        for server in self._servers:
            if not server.running():
                self.restart(self._node(server), timeout)
        _wait(self._unsettled, timeout, "the cluster to settle")

    # ------------------------------------------------------------- access

    def url(self, namespace: str = "fb", **options: object) -> str:
        """``redis+cluster://`` with the current primaries as seed nodes; with
        TLS ``rediss+cluster://`` trusting the CA (``ssl_ca_certs=""`` does not)."""
        seeds = ",".join(map(str, self.primaries()))
        if self.tls is None:
            return with_query(f"redis+cluster://{seeds}/", prefix=namespace, **options)
        return with_query(f"rediss+cluster://{seeds}/", prefix=namespace,
                          **{"ssl_ca_certs": str(self.tls.ca), **options})

    def client(self) -> RedisCluster:
        """A raw cluster client for test set-up (close it, or use ``with``)."""
        return _cluster_client(self.primaries(), **self._tls_options)

    def flushall(self) -> None:
        for node in self.primaries():
            self._client(node).flushall()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        for server in self._servers:
            server.close()


class ExternalRedisCluster:
    """A cluster named by ``FLOWBATON_TEST_REDIS_CLUSTER``
    (``redis+cluster://[user:password@]h1:p1,h2:p2/``): usable, not breakable."""

    def __init__(self, url: str) -> None:
        self._url = url
        scheme, _, rest = url.partition("://")
        if scheme not in ("redis+cluster", "rediss+cluster"):
            fail(f"{ENV_URL} must be a redis+cluster:// URL, not {url!r}")
        netloc = rest.split("/", 1)[0].split("?", 1)[0]
        userinfo, _, hosts = netloc.rpartition("@")
        self._user, _, self._password = userinfo.partition(":")
        self._seeds = [Node(host, int(port)) for host, _, port in (h.rpartition(":") for h in hosts.split(","))]
        self._ssl = scheme.startswith("rediss")

    def _credentials(self) -> dict[str, Any]:
        return {"username": self._user or None, "password": self._password or None, "ssl": self._ssl}

    def _lines(self) -> list[_Line]:
        for seed in self._seeds:
            try:
                with redis.Redis(host=seed.host, port=seed.port, socket_timeout=5, **self._credentials()) as client:
                    return _read_lines(client)
            except redis.RedisError:
                continue
        fail(f"no seed node of {ENV_URL} answers CLUSTER NODES")

    def primaries(self) -> list[Node]:
        return [line.node for line in _primaries(self._lines())]

    def replicas(self) -> list[Node]:
        return [line.node for line in _replicas(self._lines())]

    def url(self, namespace: str = "fb", **options: object) -> str:
        return with_query(self._url, prefix=namespace, **options)

    def client(self) -> RedisCluster:
        return _cluster_client(self._seeds, **self._credentials())

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall(target_nodes=RedisCluster.PRIMARIES)

    def _no_faults(self, *args: Any, **kwargs: Any) -> Any:
        fail(f"fault injection needs a local Redis Cluster, not {ENV_URL}={self._url}")

    kill_primary = wait_failover = restart = heal = wait_replicated = _no_faults

    def wait_settled(self, timeout: float = 30.0) -> None:
        pass

    def close(self) -> None:
        pass


def start_best_cluster(home: Path) -> LocalRedisCluster | ExternalRedisCluster:
    """The external cluster in ``FLOWBATON_TEST_REDIS_CLUSTER``, else a local one in ``home``."""
    external = os.environ.get(ENV_URL)
    if external:
        return ExternalRedisCluster(external)
    return LocalRedisCluster(home)
