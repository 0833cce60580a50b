"""The kazoo internals the ZooKeeper driver relies on (zookeeper/kazoo_private.py)
still exist, in the shapes it uses. A kazoo release that moves them fails
here, by name, instead of silently sending the driver down its fallbacks
(one get per znode; close() ending the session and so releasing claims)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import EXCEPTIONS, NoNodeError, UnimplementedError
from kazoo.handlers.threading import SequentialThreadingHandler
from kazoo.protocol.serialization import Auth

from flowbaton.backends.zookeeper import kazoo_private
from flowbaton.backends.zookeeper.multiread import Raw, send_multi_read
from tests.servers.zookeeper import wait_until


def test_the_private_entry_points_have_the_signatures_used() -> None:
    assert list(inspect.signature(KazooClient._call).parameters) == ["self", "request", "async_object"]
    assert list(inspect.signature(KazooClient._safe_close).parameters) == ["self"]
    client = KazooClient(hosts="127.0.0.1:1")
    try:
        assert callable(client._stopped.is_set) and callable(client._stopped.set)
        assert hasattr(client._connection, "_socket")
    finally:
        client.close()


def test_the_wire_encoders_have_the_formats_used() -> None:
    assert kazoo_private.int_struct.format == "!i"
    assert kazoo_private.multiheader_struct.format == "!iBi"  # type, done, error
    # czxid mzxid ctime mtime version cversion aversion ephemeralOwner dataLength numChildren pzxid
    assert kazoo_private.stat_struct.format == "!qqqqiiiqiiq"
    encoded = kazoo_private.write_string("zńode")
    assert encoded == kazoo_private.int_struct.pack(len("zńode".encode())) + "zńode".encode()
    assert kazoo_private.read_buffer(encoded + b"tail", 0) == ("zńode".encode(), len(encoded))
    assert kazoo_private.read_buffer(kazoo_private.int_struct.pack(-1), 0)[0] is None
    assert EXCEPTIONS[NoNodeError.code] is NoNodeError
    assert Auth._fields == ("auth_type", "scheme", "auth")  # redacted in kazoo's debug log


def test_without_the_internals_each_caller_falls_back() -> None:
    """multiRead answers "unimplemented" (the session then reads one by
    one); abandon does nothing and says so (the session then ends)."""
    bare = SimpleNamespace(handler=SequentialThreadingHandler())
    with pytest.raises(UnimplementedError):
        send_multi_read(bare, ["/x"]).get(timeout=5)
    assert kazoo_private.abandon(bare) is False
    assert kazoo_private.peer(bare) is None


@pytest.fixture
def client(zookeeper_server: Any) -> Iterator[KazooClient]:
    started = KazooClient(hosts=zookeeper_server.hosts, timeout=10)
    started.start(timeout=10)
    try:
        yield started
    finally:
        started.stop()
        started.close()


@pytest.mark.zookeeper
def test_a_request_kazoo_does_not_know_is_sent_and_answered(client: KazooClient) -> None:
    path = f"/kp-{uuid.uuid4().hex[:8]}"
    client.create(path, b"data")
    answer = send_multi_read(client, [path, f"{path}-missing"]).get(timeout=10)
    assert isinstance(answer[0], Raw) and answer[0].data == b"data" and answer[1] is None


@pytest.mark.zookeeper
def test_the_connected_server_is_known(client: KazooClient, zookeeper_server: Any) -> None:
    peer = kazoo_private.peer(client)
    assert peer is not None and f"{peer[0]}:{peer[1]}" in zookeeper_server.hosts.split(",")


@pytest.mark.zookeeper
def test_abandon_leaves_the_session_and_its_ephemerals_alive(zookeeper_server: Any, client: KazooClient) -> None:
    crashing = KazooClient(hosts=zookeeper_server.hosts, timeout=4)
    crashing.start(timeout=10)
    path = f"/kp-{uuid.uuid4().hex[:8]}"
    crashing.create(path, b"", ephemeral=True)
    owner = crashing.client_id[0]
    assert kazoo_private.abandon(crashing) is True
    stat = client.exists(path)
    assert stat is not None and stat.ephemeralOwner == owner  # no closeSession was sent
    wait_until(lambda: client.exists(path) is None, 20, "the abandoned session to time out")


@pytest.mark.zookeeper
def test_a_multi_read_lists_children(client: KazooClient) -> None:
    path = f"/kp-{uuid.uuid4().hex[:8]}"
    client.create(f"{path}/a", b"", makepath=True)
    client.create(f"{path}/b", b"")
    client.create(f"{path}-empty", b"")
    answer = send_multi_read(client, [path, f"{path}-empty", f"{path}-missing"], children=True).get(timeout=10)
    assert sorted(answer[0]) == ["a", "b"] and answer[1] == [] and answer[2] is None


@pytest.mark.zookeeper
@pytest.mark.parametrize(("lease", "granted"), [(0.1, 1.0), (4.0, None)])
def test_a_lease_the_server_does_not_grant_is_said(zookeeper_server: Any, lease: float, granted: float | None) -> None:
    """The test server bounds sessions to 1..10 s: a 0.1 s lease becomes a
    1 s session, which the backend says (warnings(), for check and
    replicas) instead of pretending; a lease in range says nothing. This
    also proves kazoo still logs the granted timeout where
    ``kazoo_private.granted_timeout`` reads it."""
    from flowbaton.backends import open_backend

    backend: Any = open_backend(zookeeper_server.url(namespace=f"g{uuid.uuid4().hex[:8]}"), lease=lease)
    try:
        assert backend.session.granted_timeout == (granted or lease)
        said = [w for w in backend.warnings() if "granted a session" in w]
        assert said == ([] if granted is None else [said[0]])
        if granted is not None:
            assert "granted a session of 1s, not the 0.1s asked for" in said[0]
    finally:
        backend.close()
