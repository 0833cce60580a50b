"""Real ZooKeeper servers on loopback, with fault injectors.

Where a server comes from (``start_best_server``), in order of preference:

1. ``FLOWBATON_TEST_ZOOKEEPER=h1:2181,h2:2181``: an existing server or
   ensemble (fault injection is then unavailable: asking for it raises
   ``ServerError`` saying so);
2. testcontainers, when a Docker engine answers a ping within two seconds;
3. the Debian package ``zookeeper`` (``/usr/share/java/zookeeper.jar``; its
   manifest names its dependency jars), run directly with ``java`` on free
   ports in a temporary folder. Ready in about a second.

A server that cannot be started raises ``ServerError`` (the test fixtures in
``tests/servers`` turn it into a failed test, never a skip). No
four-letter-word command is used anywhere; readiness is a real client session.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowbaton.testing.servers import ServerError, docker_reachable, fail, free_port, wait_until

__all__ = [
    "ENV_VAR",
    "TEST_DIGEST",
    "ContainerZooKeeper",
    "ExternalZooKeeper",
    "LocalZooKeeper",
    "ServerError",
    "ZooKeeperEnsemble",
    "expire_session",
    "server_url",
    "session_works",
    "start_best_server",
    "start_local",
    "tls_config",
]

ZK_JAR = Path("/usr/share/java/zookeeper.jar")
LOG_JAR = Path("/usr/share/java/slf4j-simple.jar")
# Netty's codec classes, which the Debian jar's manifest leaves out: without
# them the Netty connection factory (needed for a TLS port) fails on connect.
CODEC_JAR = Path("/usr/share/java/netty-codec.jar")
ENV_VAR = "FLOWBATON_TEST_ZOOKEEPER"
START_DEADLINE = 60.0
# The digest user of ``url(credentials=True)``: any ZooKeeper accepts digest
# auth without configuration, and the znodes it creates are then creator-only.
TEST_DIGEST = ("flowbaton-test", "flowbaton-test-secret")


def server_url(hosts: str, namespace: str, credentials: bool) -> str:
    """``zookeeper://`` for ``hosts`` and chroot ``/namespace``, with the test
    digest credentials when asked (how a deployment should run)."""
    userinfo = "{}:{}@".format(*TEST_DIGEST) if credentials else ""
    return f"zookeeper://{userinfo}{hosts}/{namespace}"


def session_works(hosts: str, timeout: float) -> bool:
    """True when a client session can be opened and a read answered
    (authenticated with the test digest, so that a server enforcing
    authentication answers too)."""
    from kazoo.client import KazooClient

    client = KazooClient(hosts=hosts, timeout=4.0, auth_data=[("digest", "{}:{}".format(*TEST_DIGEST))])
    try:
        client.start(timeout=timeout)
        client.exists("/")
        return True
    except Exception:
        return False
    finally:
        client.stop()
        client.close()


# ---------------------------------------------------------------- local java


def _java_command(cfg: Path) -> list[str]:
    java = shutil.which("java")
    if java is None or not ZK_JAR.exists():
        fail(
            "no ZooKeeper server: set FLOWBATON_TEST_ZOOKEEPER=host:port, run a Docker "
            "engine, or install the Debian packages 'zookeeper' and a Java runtime"
        )
    classpath = [str(ZK_JAR)] + [str(jar) for jar in (LOG_JAR, CODEC_JAR) if jar.exists()]
    return [
        java,
        # Enough for the test suite; a bench of 100,000 flows needs more (FLOWBATON_ZK_HEAP=1g).
        f"-Xmx{os.environ.get('FLOWBATON_ZK_HEAP', '256m')}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-Dzookeeper.admin.enableServer=false",
        "-cp",
        ":".join(classpath),
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        str(cfg),
    ]


def _config(member: LocalZooKeeper, peers: list[LocalZooKeeper]) -> str:
    lines = [
        "tickTime=500",
        "initLimit=20",
        "syncLimit=10",
        f"dataDir={member.data_dir}",
        f"clientPort={member.port}",
        "clientPortAddress=127.0.0.1",
        "admin.enableServer=false",
        "minSessionTimeout=1000",
        "maxSessionTimeout=60000",
        "maxClientCnxns=0",
        "reconfigEnabled=false",
    ]
    if len(peers) > 1:
        lines += [f"server.{p.myid}=127.0.0.1:{p.quorum_port}:{p.election_port}" for p in peers]
    return "\n".join([*lines, *member.extra_config]) + "\n"


def tls_config(port: int, cert_pem: Path, ca_pem: Path) -> list[str]:
    """zoo.cfg lines for a TLS client port (Netty; PEM files, no client
    certificate asked): ``cert_pem`` holds the server's key and chain."""
    return [
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
        f"secureClientPort={port}",
        f"ssl.keyStore.location={cert_pem}",
        "ssl.keyStore.type=PEM",
        f"ssl.trustStore.location={ca_pem}",
        "ssl.trustStore.type=PEM",
        "ssl.clientAuth=none",
    ]


@dataclass
class LocalZooKeeper:
    """One ``QuorumPeerMain`` process; standalone, or a member of an ensemble."""

    root: Path
    myid: int = 1
    port: int = field(default_factory=free_port)
    quorum_port: int = field(default_factory=free_port)
    election_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_config: list[str] = field(default_factory=list)  # more zoo.cfg lines (e.g. tls_config)

    @property
    def data_dir(self) -> Path:
        return self.root / f"zk{self.myid}"

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def configure(self, peers: list[LocalZooKeeper]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "myid").write_text(f"{self.myid}\n")
        (self.data_dir / "zoo.cfg").write_text(_config(self, peers))

    def url(self, namespace: str = "flowbaton", *, credentials: bool = False) -> str:
        return server_url(self.hosts, namespace, credentials)

    # -- fault injectors ---------------------------------------------------

    def start(self) -> None:
        """Start the process (no-op if running); does not wait for service."""
        if self.running:
            return
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            _java_command(self.data_dir / "zoo.cfg"),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def stop(self) -> None:
        """Graceful stop (SIGTERM), waiting for the process to exit."""
        self._signal_and_wait(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server dies without a word to its clients."""
        self._signal_and_wait(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_serving()

    def pause(self) -> None:
        """SIGSTOP: the socket stays open but nothing answers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def _signal_and_wait(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused JVM cannot handle SIGTERM
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def wait_serving(self, timeout: float = START_DEADLINE) -> None:
        """Block until this member serves client sessions (it is in a quorum)."""
        deadline = time.monotonic() + timeout
        while not session_works(self.hosts, timeout=2.0):
            if not self.running:
                fail(f"ZooKeeper on port {self.port} exited: {self.log_tail()}")
            if time.monotonic() >= deadline:
                fail(f"ZooKeeper on port {self.port} not serving: {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        log = self.data_dir / "server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class ZooKeeperEnsemble:
    """Several local members forming one quorum; ``members[i]`` has the
    per-server injectors (stop, kill, start, restart, pause, resume)."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.members = [LocalZooKeeper(root, myid=i + 1) for i in range(size)]
        for member in self.members:
            member.configure(self.members)

    @property
    def hosts(self) -> str:
        return ",".join(m.hosts for m in self.members)

    def url(self, namespace: str = "flowbaton", *, credentials: bool = False) -> str:
        return server_url(self.hosts, namespace, credentials)

    def start(self) -> None:
        for member in self.members:
            member.start()
        for member in self.members:
            member.wait_serving()

    def heal(self) -> None:
        """Every member running and serving again (test teardown)."""
        for member in self.members:
            member.resume()
            member.start()
        for member in self.members:
            member.wait_serving()

    def shutdown(self) -> None:
        for member in self.members:
            member.kill()


# ----------------------------------------------------------- other sources


class ExternalZooKeeper:
    """A server given by ``FLOWBATON_TEST_ZOOKEEPER``; no fault injection."""

    def __init__(self, hosts: str) -> None:
        self.hosts = hosts

    def url(self, namespace: str = "flowbaton", *, credentials: bool = False) -> str:
        return server_url(self.hosts, namespace, credentials)

    def __getattr__(self, name: str) -> Any:
        if name in {"stop", "kill", "start", "restart", "pause", "resume", "members"}:
            fail(f"{name}() needs a local ZooKeeper; unset {ENV_VAR} to get one")
        raise AttributeError(name)


class ContainerZooKeeper:
    """A ``zookeeper`` image run by testcontainers; pause/resume/kill/start
    act on the container. (Untested on the development machine: no Docker.)"""

    IMAGE = "zookeeper:3.8"

    def __init__(self) -> None:
        from testcontainers.core.container import DockerContainer

        self.container = (
            DockerContainer(self.IMAGE)
            .with_env("ZOO_ADMINSERVER_ENABLED", "false")
            .with_env("ZOO_CFG_EXTRA", "minSessionTimeout=1000")
            .with_bind_ports(2181, free_port())
        )
        self.container.start()
        port = self.container.get_exposed_port(2181)
        self.hosts = f"{self.container.get_container_host_ip()}:{port}"
        wait_until(lambda: session_works(self.hosts, 2.0), START_DEADLINE, "container ZooKeeper")

    def url(self, namespace: str = "flowbaton", *, credentials: bool = False) -> str:
        return server_url(self.hosts, namespace, credentials)

    def _wrapped(self) -> Any:
        return self.container.get_wrapped_container()

    def kill(self) -> None:
        self._wrapped().kill()

    def stop(self) -> None:
        self._wrapped().stop(timeout=10)

    def start(self) -> None:
        self._wrapped().start()

    def restart(self) -> None:
        self.stop()
        self.start()
        wait_until(lambda: session_works(self.hosts, 2.0), START_DEADLINE, "ZooKeeper restart")

    def pause(self) -> None:
        self._wrapped().pause()

    def resume(self) -> None:
        self._wrapped().unpause()

    def shutdown(self) -> None:
        self.container.stop()


# -------------------------------------------------------------- injectors


def expire_session(target: Any, timeout: float = 20.0) -> None:
    """Force the session of ``target`` (a KazooClient, or a backend exposing
    ``.kazoo``) to expire now, without waiting out its timeout.

    A second client joins the same session (id + password) and closes it: the
    server then ends the session, deletes its ephemeral znodes, and the first
    client learns on its next contact that its session is gone (LOST). Waits
    until the first client has a new session.
    """
    from kazoo.client import KazooClient

    client = getattr(target, "kazoo", target)
    session_id, password = client.client_id
    hosts = ",".join(f"{host}:{port}" for host, port in client.hosts)
    twin = KazooClient(hosts=hosts, client_id=(session_id, password), timeout=4.0)
    twin.start(timeout=10)
    twin.stop()
    twin.close()
    wait_until(
        lambda: client.connected and client.client_id[0] != session_id,
        timeout,
        f"client to notice the expiry of session {session_id:#x}",
    )


# ---------------------------------------------------------------- starting


def start_local(root: Path) -> LocalZooKeeper:
    """A standalone local server in ``root``, serving when this returns."""
    server = LocalZooKeeper(root)
    server.configure([server])
    server.start()
    server.wait_serving()
    return server


def start_best_server(root: Path) -> Any:
    """The preferred available single server (see the module docstring)."""
    external = os.environ.get(ENV_VAR)
    if external:
        if not session_works(external, timeout=10.0):
            fail(f"{ENV_VAR}={external!r}: cannot open a ZooKeeper session there")
        return ExternalZooKeeper(external)
    if docker_reachable(timeout=2):
        return ContainerZooKeeper()
    return start_local(root)


