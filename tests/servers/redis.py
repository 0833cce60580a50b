"""Redis fixtures for the tests, over ``flowbaton.testing.servers``.

The servers (a local ``redis-server``, a container, an external one named by
``FLOWBATON_TEST_REDIS``, the Sentinel cluster) and their fault injectors
live in ``flowbaton/testing/servers/redis.py``, shared with the chaos harness
and the benchmarks. A server that cannot be started fails the test with the
reason; it is never skipped.

Fixtures:
  ``redis_server``          session-wide server, ``.url(namespace)`` + injectors
  ``make_redis_server``     factory for private local servers (custom config)
  ``redis_sentinel_cluster`` primary + replica + 3 sentinels on loopback
  ``redis_cluster``         session-wide Redis Cluster (3 primaries, a replica
                            each; or ``FLOWBATON_TEST_REDIS_CLUSTER``):
                            ``.url(namespace)``, ``.client()``, and
                            ``kill_primary``/``wait_failover``/``restart``;
                            a test that kills nodes calls ``heal()`` last
  ``tls_redis``             ``tls_redis(name)``: a private server with a TLS
                            port whose certificate (from a throw-away trustme
                            CA) names ``name``; returns its ``rediss://`` URL
  ``tls_redis_cluster``     a private Redis Cluster of three primaries (no
                            replicas) speaking TLS only, with a certificate
                            for 127.0.0.1 from a throw-away trustme CA;
                            ``.url()`` is ``rediss+cluster://`` trusting it
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from flowbaton.testing.servers.redis import (
    LocalRedis,
    SentinelCluster,
    free_port,
    start_best_server,
)
from flowbaton.testing.servers.redis import redis_binary as _redis_binary
from flowbaton.testing.servers.redis_cluster import (
    ExternalRedisCluster,
    LocalRedisCluster,
    TLSFiles,
    start_best_cluster,
)

from . import failing

__all__ = [
    "TLSServer",
    "AnyRedisCluster",
    "LocalRedis",
    "SentinelCluster",
    "free_port",
    "redis_binary",
]


def redis_binary() -> str:
    with failing():
        return _redis_binary()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's Redis: external URL, container, or local process."""
    with failing():
        server = start_best_server(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def make_redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., LocalRedis]]:
    """``make_redis_server(config={...})``: a private local server for tests
    that break it or need other settings; stopped after the test."""
    made: list[LocalRedis] = []

    def make(config: dict[str, str] | None = None) -> LocalRedis:
        server = LocalRedis(redis_binary(), tmp_path_factory.mktemp("redis"), config)
        made.append(server)
        with failing():
            server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            server.close()


@pytest.fixture
def redis_sentinel_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    with failing():
        cluster = SentinelCluster(redis_binary(), tmp_path_factory.mktemp("sentinel"))
    try:
        yield cluster
    finally:
        cluster.close()


AnyRedisCluster = LocalRedisCluster | ExternalRedisCluster


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnyRedisCluster]:
    """The session's Redis Cluster, started once (about 3 s): the external
    one in ``FLOWBATON_TEST_REDIS_CLUSTER``, else six local processes. Each
    test keeps to its own namespace; one that kills nodes calls ``heal()``
    last, so the next test finds three primaries with a replica each."""
    with failing():
        cluster = start_best_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield cluster
    finally:
        cluster.close()


TLSServer = Callable[[str], str]


@pytest.fixture
def tls_redis(make_redis_server: Callable[..., LocalRedis], tmp_path: Path) -> TLSServer:
    """``tls_redis(name)``: a TLS port serving a certificate for ``name``;
    returns a ``rediss://127.0.0.1`` URL trusting the test CA."""

    def start(name: str) -> str:
        ca = trustme.CA()
        cert = ca.issue_cert(name)
        files = {key: tmp_path / f"{key}.pem" for key in ("ca", "cert", "key")}
        ca.cert_pem.write_to_path(str(files["ca"]))
        cert.cert_chain_pems[0].write_to_path(str(files["cert"]))
        cert.private_key_pem.write_to_path(str(files["key"]))
        port = free_port()
        make_redis_server({
            "tls-port": str(port),
            "tls-cert-file": str(files["cert"]),
            "tls-key-file": str(files["key"]),
            "tls-ca-cert-file": str(files["ca"]),
            "tls-auth-clients": "no",
        })
        return f"rediss://127.0.0.1:{port}/0?prefix=tls&ssl_ca_certs={files['ca']}"

    return start


@pytest.fixture(scope="module")
def tls_redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """Three TLS-only primaries, started once per module (about 2 s)."""
    home = tmp_path_factory.mktemp("redis-cluster-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")  # an IP address in the certificate, as the URL names it
    files = TLSFiles(ca=home / "ca.pem", cert=home / "cert.pem", key=home / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    cert.private_key_pem.write_to_path(str(files.key))
    with failing():
        cluster = LocalRedisCluster(home, replicas_per_primary=0, binary=redis_binary(), tls=files)
    try:
        yield cluster
    finally:
        cluster.close()
