"""Redis driver: key layout (one slot per flow) and URL parsing."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from flowbaton.backends import open_backend
from flowbaton.backends.errors import BadBackendURL
from flowbaton.backends.redis.keys import FlowKeys, GlobalKeys, IndexKeys, escape
from flowbaton.backends.redis.url import parse_url
from tests.contract.helpers import LEASE, make_flow, make_task

AWKWARD_IDS = [
    "plain",
    "a{b}c",
    "}",
    "{",
    "{}",
    "}{",
    "a:b:{c}:d",
    "%7D",
    "%",
    "",
    "x\ud800y",
    "with space/and/slashes ✓",
]


@pytest.mark.parametrize("flow_id", AWKWARD_IDS)
def test_every_key_of_a_flow_hashes_to_one_slot(flow_id: str) -> None:
    keys = FlowKeys.of("fb", flow_id)
    slots = {key_slot(key.encode("utf-8")) for key in keys.all()}
    assert len(slots) == 1, keys


def test_index_keys_share_one_slot() -> None:
    index, shared = IndexKeys.of("fb"), GlobalKeys.of("fb")
    names = [index.runnable, index.created, index.seq, index.leases, shared.seq, shared.replicas,
             shared.replica_expiry, shared.layout]
    assert len({key_slot(name.encode()) for name in names}) == 1


def test_escaping_is_injective() -> None:
    escaped = [escape(flow_id) for flow_id in AWKWARD_IDS]
    assert len(set(escaped)) == len(AWKWARD_IDS)
    assert all("{" not in e and "}" not in e for e in escaped)


@pytest.mark.redis
def test_stored_keys_of_awkward_flows_share_their_slot(redis_server: object) -> None:
    """The keys the driver really writes, read back from the server."""
    url = redis_server.url(namespace="slots")  # type: ignore[attr-defined]
    backend = open_backend(url)
    try:
        for flow_id in AWKWARD_IDS:
            backend.create_flow(make_flow(flow_id))
            token = backend.claim(flow_id, "r1", LEASE)
            backend.save_task(token, make_task("t"))
        with redis_server.client() as client:  # type: ignore[attr-defined]
            stored = client.keys("slots:{*")
        by_tag: dict[bytes, set[int]] = {}
        for key in stored:
            tag = key[len(b"slots:{") : key.index(b"}")]
            by_tag.setdefault(tag, set()).add(key_slot(key))
        assert len(by_tag) == len(AWKWARD_IDS)
        assert all(len(slots) == 1 for slots in by_tag.values())
    finally:
        for flow_id in AWKWARD_IDS:
            backend.delete_flow(backend.claim(flow_id, "cleanup", LEASE, force=True))
        backend.close()


# ------------------------------------------------------------------- URLs


def test_plain_url_with_credentials_and_options() -> None:
    target = parse_url("redis://us%40er:p%3Ass@db.example:6380/3?prefix=app&socket_timeout=2")
    assert target.hosts == (("db.example", 6380),)
    assert (target.username, target.password, target.db) == ("us@er", "p:ss", 3)
    assert target.options["prefix"] == "app"
    assert target.options["socket_timeout"] == 2.0
    assert "p:ss" not in target.describe()


def test_password_only_and_defaults() -> None:
    target = parse_url("rediss://:secret@[::1]/")
    assert target.hosts == (("::1", 6379),)
    assert (target.username, target.password, target.db) == (None, "secret", 0)
    assert target.options["prefix"] == "fb"


def test_sentinel_url() -> None:
    target = parse_url("redis+sentinel://h1:26379,h2,h3:26380/mymaster/2?sentinel_password=x")
    assert target.hosts == (("h1", 26379), ("h2", 26379), ("h3", 26380))
    assert (target.service, target.db) == ("mymaster", 2)
    assert target.options["sentinel_password"] == "x"


def test_keyword_options_override_the_url() -> None:
    assert parse_url("redis://h/0?prefix=a", {"prefix": "b"}).options["prefix"] == "b"


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://h/0?prefix=a{b}", "prefix"),
        ("redis://h/0?prefix=", "prefix"),
        ("redis://h/0?nope=1", "nope"),
        ("redis://h/0?socket_timeout=soon", "socket_timeout"),
        ("redis://h/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("redis://h/zero", "zero"),
        ("redis://h:port/0", "port"),
        ("redis+sentinel://h1,h2/", "service"),
    ],
)
def test_bad_urls_name_the_problem(url: str, named: str) -> None:
    with pytest.raises(BadBackendURL, match=named):
        parse_url(url)
