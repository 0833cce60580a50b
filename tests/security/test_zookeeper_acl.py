"""ZooKeeper ACLs (docs/security.md, "Locking the store down"), against a real server.

Digest auth needs no server configuration: any client may ``addauth
digest``, and a znode whose ACL names only a digest identity refuses every
other client. So the ordinary test server is a server "with authentication"
as far as flowbaton's znodes are concerned; the intruders below are kazoo
clients with no credentials or with another user's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.security import OPEN_ACL_UNSAFE, make_digest_acl

import flowbaton
from flowbaton.backends import open_backend
from flowbaton.backends.errors import BackendUnavailable, BadBackendURL, InsecureBackend
from flowbaton.backends.zookeeper.layout import Layout
from flowbaton.backends.zookeeper.settings import Settings
from flowbaton.testing.servers import free_port
from flowbaton.testing.servers.zookeeper import LocalZooKeeper, server_url, tls_config
from tests.contract.helpers import make_flow, make_task
from tests.coordinator.ops_helpers import run_cli

pytestmark = [pytest.mark.security, pytest.mark.zookeeper]

OWNER = ("owner", "owner-pw")
OTHER = ("other", "other-pw")
SUCCESS = "SUCCESS"


def _client(hosts: str, user: tuple[str, str] | None = None) -> KazooClient:
    auth = [("digest", f"{user[0]}:{user[1]}")] if user else None
    client = KazooClient(hosts=hosts, auth_data=auth)
    client.start(timeout=10)
    return client


@pytest.fixture
def hosts(zookeeper_server: Any) -> str:
    value: str = zookeeper_server.hosts
    return value


@pytest.fixture
def anonymous(hosts: str) -> Iterator[KazooClient]:
    client = _client(hosts)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def other(hosts: str) -> Iterator[KazooClient]:
    client = _client(hosts, OTHER)
    yield client
    client.stop()
    client.close()


def _url(hosts: str, namespace: str, user: tuple[str, str] | None = OWNER, query: str = "") -> str:
    userinfo = f"{user[0]}:{user[1]}@" if user else ""
    return f"zookeeper://{userinfo}{hosts}/{namespace}" + (f"?{query}" if query else "")


def _layout(url: str) -> Layout:
    return Layout(Settings.from_url(url, {}).chroot)


def _flow_with_a_task(url: str) -> tuple[Layout, list[str]]:
    """A flow, claimed, with one task record, stored through ``url``."""
    with open_backend(url) as backend:
        backend.create_flow(make_flow("f"))
        token = backend.claim("f", "r1", 10.0)
        backend.save_task(token, make_task("t"))
        paths = _layout(url)
        return paths, [paths.root, *paths.folders(), paths.signal, paths.flow("f"), paths.task("f", "t"),
                       paths.epoch("f"), paths.claim("f")]


# ------------------------------------------------ (a), (b): creator-only


def test_with_credentials_no_one_else_can_read_or_write(
    hosts: str, zookeeper_namespace: str, anonymous: KazooClient, other: KazooClient
) -> None:
    url = _url(hosts, zookeeper_namespace)
    paths, znodes = _flow_with_a_task(url)
    for intruder in (anonymous, other):
        for path in znodes:
            with pytest.raises(NoAuthError):
                intruder.get(path)
            with pytest.raises(NoAuthError):
                intruder.set(path, b"intruder")
        with pytest.raises(NoAuthError):
            intruder.create(f"{paths.flows}/planted", b"{}")
        with pytest.raises(NoAuthError):
            intruder.get_children(paths.flows)
    owner_acl = make_digest_acl(*OWNER, all=True)
    with open_backend(url) as backend:
        for path in znodes:
            assert backend.kazoo.get_acls(path)[0] == [owner_acl], path


def test_world_read_is_only_what_the_option_asks_for(
    hosts: str, zookeeper_namespace: str, anonymous: KazooClient
) -> None:
    url = _url(hosts, zookeeper_namespace, query="world_read=true")
    paths, _ = _flow_with_a_task(url)
    assert json.loads(anonymous.get(paths.flow("f"))[0])["id"] == "f"
    with pytest.raises(NoAuthError):
        anonymous.set(paths.flow("f"), b"intruder")
    with open_backend(url) as backend:
        assert backend.warnings() == []


def test_another_user_cannot_open_our_namespace(hosts: str, zookeeper_namespace: str) -> None:
    _flow_with_a_task(_url(hosts, zookeeper_namespace))
    with pytest.raises(InsecureBackend, match="created by someone else") as refused:
        open_backend(_url(hosts, zookeeper_namespace, OTHER))
    assert f"/{zookeeper_namespace}" in str(refused.value) and OTHER[1] not in str(refused.value)


# --------------------------------- (c): a folder someone else made first


@pytest.fixture
def planted(zookeeper_namespace: str, anonymous: KazooClient) -> str:
    """The chroot and its flows/ folder, created first with the open ACL."""
    path = f"/{zookeeper_namespace}/flows"
    anonymous.create(path, b"", acl=OPEN_ACL_UNSAFE, makepath=True)
    return path


def test_an_open_folder_made_by_someone_else_refuses_the_start(
    hosts: str, zookeeper_namespace: str, planted: str, anonymous: KazooClient
) -> None:
    with pytest.raises(InsecureBackend) as refused:
        open_backend(_url(hosts, zookeeper_namespace))
    message = str(refused.value)
    assert f"/{zookeeper_namespace}, {planted}: anyone may change it" in message, message
    assert "insecure_acl=warn" in message and "\n" not in message and OWNER[1] not in message
    assert isinstance(refused.value, BadBackendURL)
    assert anonymous.get_children(f"/{zookeeper_namespace}") == ["flows"]  # nothing created under it


def test_check_names_the_open_folder_and_fails(
    hosts: str, zookeeper_namespace: str, planted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run_cli(capsys, _url(hosts, zookeeper_namespace), "check")
    assert out.code == 1 and "unsafe access control" in out.stdout and planted in out.stdout, out
    assert OWNER[1] not in out.stdout + out.stderr


def test_the_warn_option_runs_with_a_loud_warning(
    hosts: str, zookeeper_namespace: str, planted: str, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = _url(hosts, zookeeper_namespace, query="insecure_acl=warn")
    with caplog.at_level(logging.WARNING, logger="flowbaton"):
        _flow_with_a_task(url)
    assert any("UNSAFE ZooKeeper ACL" in r.getMessage() and planted in r.getMessage() for r in caplog.records)
    with open_backend(url) as backend:
        assert backend.load_flow("f").id == "f"
        assert any(planted in warning for warning in backend.warnings())
    out = run_cli(capsys, url, "check")
    assert out.code == 1 and "unsafe backend setting" in out.stdout and planted in out.stdout, out


def test_an_open_folder_is_refused_even_when_we_made_the_rest(
    hosts: str, zookeeper_namespace: str, anonymous: KazooClient
) -> None:
    url = _url(hosts, zookeeper_namespace)
    paths, _ = _flow_with_a_task(url)
    with open_backend(url) as backend:  # an admin with our credentials opens claims/ to the world
        backend.kazoo.set_acls(paths.claims, OPEN_ACL_UNSAFE)
    with pytest.raises(InsecureBackend, match=f"{paths.claims}: anyone may change it"):
        open_backend(url)


# ----------------------------------------------- (d): no credentials


def test_without_credentials_check_reports_world_writable_znodes(
    hosts: str, zookeeper_namespace: str, anonymous: KazooClient, capsys: pytest.CaptureFixture[str]
) -> None:
    url = _url(hosts, zookeeper_namespace, user=None)
    paths, _ = _flow_with_a_task(url)
    anonymous.set(paths.flow("f"), b"{}")  # anyone can: that is the problem reported
    out = run_cli(capsys, url, "check")
    assert out.code == 1 and "world-writable" in out.stdout and f"/{zookeeper_namespace}" in out.stdout, out


# ------------------------------------------------------ credentials files


def test_credentials_from_a_digest_file(
    hosts: str, zookeeper_namespace: str, tmp_path: Path, anonymous: KazooClient
) -> None:
    secret = tmp_path / "zk-digest"
    secret.write_text(f"{OWNER[0]}:{OWNER[1]}\n")
    url = _url(hosts, zookeeper_namespace, user=None, query=f"digest_file={secret}")
    paths, _ = _flow_with_a_task(url)
    with pytest.raises(NoAuthError):
        anonymous.get(paths.flow("f"))
    with open_backend(_url(hosts, zookeeper_namespace)) as same_user:  # the same identity, from the URL
        assert same_user.load_flow("f").id == "f"


def test_bad_credentials_options_are_one_line_without_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / "zk-digest"
    secret.write_text("no-colon-here\n")
    cases = {
        f"zookeeper://u:p@h:2181/ns?digest_file={secret}": "twice",
        f"zookeeper://h:2181/ns?digest_file={secret}": "user:password",
        f"zookeeper://h:2181/ns?digest_file={tmp_path / 'missing'}": "cannot be read",
        "zookeeper://u:p@h:2181/ns?insecure_acl=maybe": "refuse, warn",
    }
    for url, expected in cases.items():
        with pytest.raises(BadBackendURL, match=expected) as refused:
            Settings.from_url(url, {})
        assert "no-colon-here" not in str(refused.value)


# ---------------------------------------------------------- TLS names


def test_tls_checks_host_names_unless_told_not_to() -> None:
    def tls(query: str) -> dict[str, Any]:
        return Settings.from_url(f"zookeeper://h:2281/ns?use_ssl=true{query}", {}).tls

    assert tls("")["check_hostname"] is True and tls("")["verify_certs"] is True
    assert tls("&check_hostname=false")["check_hostname"] is False
    assert tls("&verify_certs=false")["check_hostname"] is False  # nothing to check a name in
    with pytest.raises(BadBackendURL, match="check_hostname"):
        tls("&verify_certs=false&check_hostname=true")


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[LocalZooKeeper, Path]]:
    """A private server with a TLS port whose certificate names only
    ``localhost`` (not 127.0.0.1); yields it and the CA file."""
    import trustme  # in the test extras: missing is an install error, never a skip
    ca = trustme.CA()
    ca_pem, cert_pem = tmp_path / "ca.pem", tmp_path / "server.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    leaf = ca.issue_cert("localhost")
    # ZooKeeper's PEM reader takes PKCS#8 keys only; trustme writes SEC1 ("EC PRIVATE KEY").
    key = load_pem_private_key(leaf.private_key_pem.bytes(), None)
    pkcs8 = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    cert_pem.write_bytes(pkcs8 + b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    server = LocalZooKeeper(tmp_path / "zk")
    server.extra_config = tls_config(free_port(), cert_pem, ca_pem)
    server.configure([server])
    server.start()
    try:
        server.wait_serving()
        yield server, ca_pem
    finally:
        server.kill()


# kazoo 2.11 leaves the socket of a failed handshake to the garbage collector
# (create_tcp_connection re-raises without closing it).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_tls_refuses_a_certificate_for_another_host_name(tls_server: tuple[LocalZooKeeper, Path]) -> None:
    server, ca = tls_server
    port = next(line for line in server.extra_config if line.startswith("secureClientPort=")).split("=")[1]
    query = f"use_ssl=true&ca={ca}&connect_timeout=3&retry_deadline=1"
    with open_backend(f"zookeeper://{OWNER[0]}:{OWNER[1]}@localhost:{port}/tls?{query}") as backend:
        assert backend.warnings() == []  # the name matches: TLS and creator-only ACLs
    with pytest.raises(BackendUnavailable, match="no ZooKeeper session"):
        open_backend(f"zookeeper://{OWNER[0]}:{OWNER[1]}@127.0.0.1:{port}/tls?{query}")
    url = f"zookeeper://{OWNER[0]}:{OWNER[1]}@127.0.0.1:{port}/tls?{query}&check_hostname=false"
    with open_backend(url) as backend:
        assert backend.warnings() == []


# ------------------------------------------- a flow end to end, with digest


def test_a_flow_runs_end_to_end_with_credentials(
    zookeeper_server: Any, zookeeper_namespace: str, tmp_path: Path, anonymous: KazooClient
) -> None:
    url = zookeeper_server.url(zookeeper_namespace, credentials=True)
    assert url == server_url(zookeeper_server.hosts, zookeeper_namespace, True)
    report = flowbaton.run("tests.coord_flows:steps", kwargs={"n": 2},
                           inputs={"ledger": str(tmp_path / "ledger"), "pause": 0.0}, backend=url)
    assert report.state == SUCCESS, report
    with pytest.raises(NoAuthError):
        anonymous.get(_layout(url).flow(report.id))


# ------------------------------- a server that refuses clients without auth


def session_works_anonymously(hosts: str) -> bool:
    client = KazooClient(hosts=hosts, timeout=4.0)
    try:
        client.start(timeout=5)
        client.create("/probe", b"x")
        return True
    except Exception:  # kazoo's timeout or a session the server closed
        return False
    finally:
        client.stop()
        client.close()


@pytest.fixture
def enforcing_server(tmp_path: Path) -> Iterator[LocalZooKeeper]:
    """A private server with authentication enforced (ZooKeeper >= 3.7):
    a client that has not authenticated with digest gets no session."""
    server = LocalZooKeeper(tmp_path / "zk")
    server.extra_config = ["enforce.auth.enabled=true", "enforce.auth.schemes=digest"]
    server.configure([server])
    server.start()
    try:
        server.wait_serving()
        yield server
    finally:
        server.kill()


def test_flows_run_on_a_server_that_enforces_authentication(enforcing_server: LocalZooKeeper, tmp_path: Path) -> None:
    assert not session_works_anonymously(enforcing_server.hosts)
    url = server_url(enforcing_server.hosts, "enforced", True)
    report = flowbaton.run("tests.coord_flows:steps", kwargs={"n": 2},
                           inputs={"ledger": str(tmp_path / "ledger"), "pause": 0.0}, backend=url)
    assert report.state == SUCCESS, report
    with open_backend(url) as backend:
        assert backend.warnings() == []
