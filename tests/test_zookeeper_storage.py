"""ZooKeeper driver specifics: names, URL options, size cap, corrupt bytes,
the layout read with zkCli.sh, digest ACLs, submit throughput, in-doubt claims."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import MarshallingError, NoAuthError

from flowbaton.backends import open_backend
from flowbaton.backends.errors import (
    BackendUnavailable,
    BadBackendURL,
    BadCursor,
    ClaimHeld,
    CorruptRecord,
    FlowNotFound,
    ResultTooLarge,
)
from flowbaton.backends.states import SUCCESS
from flowbaton.backends.zookeeper import ZooKeeperBackend
from flowbaton.backends.zookeeper.created import CreationIndex
from flowbaton.backends.zookeeper.layout import Layout, decode_name, encode_name
from flowbaton.backends.zookeeper.settings import Settings
from tests.contract.faults import lose_zookeeper_claim_reply
from tests.contract.helpers import LEASE, make_flow, make_task

pytestmark = pytest.mark.zookeeper

ZKCLI = Path("/usr/share/zookeeper/bin/zkCli.sh")

AWKWARD_IDS = [
    "", ".", "..", "...", "/", "a/b", "/abs/", "%", "%2F", "%%", "~tilde", "zookeeper",
    "sp ace", "\x00nul", "\x01\x1f\x7f\x9f", "ünï", "𝄞 clef", "中文", "\ud800lone",
    "\ufff0\uffff", "quote\"'", "pkg.mod.Class.method", "x" * 300,
]


@pytest.fixture
def url(zookeeper_server: Any, zookeeper_namespace: str) -> str:
    result: str = zookeeper_server.url(zookeeper_namespace)
    return result


@pytest.fixture
def zk(url: str) -> Iterator[ZooKeeperBackend]:
    backend = open_backend(url)
    assert isinstance(backend, ZooKeeperBackend)
    yield backend
    backend.close()


@pytest.fixture
def raw(zookeeper_server: Any) -> Iterator[KazooClient]:
    """Another client, without credentials, as an operator or intruder."""
    client = KazooClient(hosts=zookeeper_server.hosts)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


def _paths(url: str) -> Layout:
    return Layout(Settings.from_url(url, {}).chroot)


# ------------------------------------------------------------------- names


@pytest.mark.parametrize("value", AWKWARD_IDS)
def test_any_string_round_trips_through_a_znode_name(value: str) -> None:
    name = encode_name(value)
    assert name and "/" not in name and name not in (".", "..")
    assert all(c.isascii() and c.isprintable() for c in name)
    assert decode_name(name) == value


def test_awkward_task_ids_are_stored_and_listed(zk: ZooKeeperBackend, raw: KazooClient) -> None:
    zk.create_flow(make_flow("f/1"))
    token = zk.claim("f/1", "r1", LEASE)
    for task_id in AWKWARD_IDS:
        zk.save_task(token, make_task(task_id, result=task_id))
    tasks = zk.load_tasks("f/1")
    assert sorted(tasks) == sorted(AWKWARD_IDS)
    assert all(tasks[t].result == t for t in AWKWARD_IDS)
    assert len(raw.get_children(_paths(zk.url).tasks("f/1"))) == len(AWKWARD_IDS)


# --------------------------------------------------------------- settings


def test_url_settings() -> None:
    settings = Settings.from_url(
        "zookeeper://us%40er:p%3Ass@h1:2181,h2:2182/a/b?session_timeout=4&retry_deadline=2", {}
    )
    assert (settings.hosts, settings.chroot) == ("h1:2181,h2:2182", "/a/b")
    assert (settings.username, settings.password) == ("us@er", "p:ss")
    assert (settings.session_timeout, settings.retry_deadline) == (4.0, 2.0)
    assert settings.tls == {}


def test_reconnect_delay_defaults_to_a_third_of_the_session_at_most_one_second() -> None:
    assert Settings.from_url("zookeeper://h/ns", {"lease": 2.4}).reconnect_delay == pytest.approx(0.8)
    assert Settings.from_url("zookeeper://h/ns", {"lease": 30}).reconnect_delay == 1.0
    assert Settings.from_url("zookeeper://h/ns?reconnect_delay=5", {"lease": 30}).reconnect_delay == 5.0
    with pytest.raises(BadBackendURL, match="reconnect_delay"):
        Settings.from_url("zookeeper://h/ns?reconnect_delay=0", {})


def test_lease_sets_session_timeout_unless_the_url_does() -> None:
    assert Settings.from_url("zookeeper://h/ns", {"lease": 7.5}).session_timeout == 7.5
    given = Settings.from_url("zookeeper://h/ns?session_timeout=3", {"lease": 7.5})
    assert given.session_timeout == 3.0
    assert Settings.from_url("zookeeper://h/ns", {}).session_timeout == 10.0


def test_tls_options_reach_the_client() -> None:
    settings = Settings.from_url("zookeeper://h/ns?use_ssl=1&ca=/ca.pem&verify_certs=0", {})
    assert settings.tls["use_ssl"] is True and settings.tls["ca"] == "/ca.pem"
    assert settings.tls["verify_certs"] is False


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("zookeeper://h:2181", "chroot"),
        ("zookeeper://h:2181/", "chroot"),
        ("zookeeper://h/ns/../x", "znode name"),
        ("zookeeper://user@h/ns", "user:password"),
        ("zookeeper://h/ns?session_timeout=-1", "session_timeout"),
        ("zookeeper://h/ns?max_record_bytes=lots", "max_record_bytes"),
    ],
)
def test_bad_urls_name_the_problem(url: str, match: str) -> None:
    with pytest.raises(BadBackendURL, match=match):
        open_backend(url)


def test_unreachable_server_is_backend_unavailable_quickly() -> None:
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match="no ZooKeeper session"):
        open_backend("zookeeper://127.0.0.1:1/ns?connect_timeout=1")
    assert time.monotonic() - start < 10


# ---------------------------------------------------------------- size cap


def test_result_over_the_limit_names_task_and_limit(zk: ZooKeeperBackend) -> None:
    zk.create_flow(make_flow("f"))
    token = zk.claim("f", "r1", LEASE)
    with pytest.raises(ResultTooLarge) as caught:
        zk.save_task(token, make_task("big.task", state=SUCCESS, result="x" * 1_100_000))
    assert "big.task" in str(caught.value) and "1,000,000" in str(caught.value)
    assert zk.load_tasks("f") == {}  # nothing written


def test_result_just_under_the_limit_is_stored(zk: ZooKeeperBackend) -> None:
    zk.create_flow(make_flow("f"))
    token = zk.claim("f", "r1", LEASE)
    zk.save_task(token, make_task("near.limit", result="y" * 990_000))
    assert len(zk.load_tasks("f")["near.limit"].result) == 990_000


def test_limit_is_an_option_and_covers_flows(url: str) -> None:
    with open_backend(url, max_record_bytes=2_000) as zk:
        with pytest.raises(ResultTooLarge, match="flow 'fat'"):
            zk.create_flow(make_flow("fat", inputs={"blob": "z" * 5_000}))
        with pytest.raises(FlowNotFound):
            zk.load_flow("fat")


# ---------------------------------------------------------- corrupt bytes


def test_corrupt_bytes_in_a_task_znode_name_the_path(zk: ZooKeeperBackend, raw: KazooClient) -> None:
    zk.create_flow(make_flow("f"))
    token = zk.claim("f", "r1", LEASE)
    zk.save_task(token, make_task("ok.task"))
    zk.save_task(token, make_task("bad.task"))
    path = _paths(zk.url).task("f", "bad.task")
    raw.set(path, b"\xff\xfe\x00 not utf-8 {")
    with pytest.raises(CorruptRecord) as caught:
        zk.load_tasks("f")
    assert path in str(caught.value) and "bad.task" in str(caught.value)
    assert zk.load_flow("f").id == "f"  # the rest of the flow stays readable


def test_corrupt_claim_znode_does_not_hide_other_claims(zk: ZooKeeperBackend, raw: KazooClient) -> None:
    for flow_id in ("a", "b"):
        zk.create_flow(make_flow(flow_id))
        zk.claim(flow_id, "r1", LEASE)
    raw.set(_paths(zk.url).claim("a"), b"garbage")
    assert [c.flow_id for c in zk.list_claims()] == ["b"]
    with pytest.raises(ClaimHeld):
        zk.claim("a", "r2", LEASE)


# ---------------------------------------------------------------- layout


def test_layout_is_readable_with_zkcli(zk: ZooKeeperBackend, zookeeper_server: Any) -> None:
    assert ZKCLI.exists(), "zkCli.sh missing: install the Debian package zookeeper"
    flow = make_flow("readable-flow", inputs={"n": 1})
    zk.create_flow(flow)
    path = _paths(zk.url).flow("readable-flow")
    env = {**os.environ, "ZOO_LOG_DIR": "/tmp", "CLIENT_JVMFLAGS": "-Xmx128m -XX:TieredStopAtLevel=1"}
    done = subprocess.run(
        [str(ZKCLI), "-server", zookeeper_server.hosts, "get", path],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    record = next(line for line in done.stdout.splitlines() if line.startswith("{"))
    assert json.loads(record) == json.loads(flow.to_json())


def test_tree_shape(zk: ZooKeeperBackend, raw: KazooClient) -> None:
    zk.create_flow(make_flow("f"))
    token = zk.claim("f", "r1", LEASE)
    zk.save_task(token, make_task("t"))
    paths = _paths(zk.url)
    assert sorted(raw.get_children(paths.root)) == ["claims", "created", "created-indexed", "epochs", "flows",
                                                    "replicas", "runnable", "signal"]
    epoch_data, epoch_stat = raw.get(paths.epoch("f"))
    assert (epoch_data.decode(), epoch_stat.version) == (token.claim_id, token.epoch)
    claim = json.loads(raw.get(paths.claim("f"))[0])
    assert claim["claim_id"] == token.claim_id and claim["epoch"] == token.epoch
    assert raw.exists(paths.claim("f")).ephemeralOwner != 0
    assert raw.get_children(paths.tasks("f")) == ["t"]
    assert raw.exists(paths.runnable_marker("f")) is not None


# ------------------------------------------------------------ digest auth


def test_digest_auth_keeps_other_clients_from_writing(
    zookeeper_server: Any, zookeeper_namespace: str, raw: KazooClient
) -> None:
    hosts = zookeeper_server.hosts
    # world_read: creator-only is the default (docs/security.md; tests/security/test_zookeeper_acl.py)
    url = f"zookeeper://flow:s3cret@{hosts}/{zookeeper_namespace}?world_read=true"
    with open_backend(url) as owner:
        owner.create_flow(make_flow("f"))
        token = owner.claim("f", "r1", LEASE)
        owner.save_task(token, make_task("t"))
        paths = _paths(url)
        for path in (paths.flow("f"), paths.task("f", "t"), paths.epoch("f"), paths.flows):
            with pytest.raises(NoAuthError):
                raw.set(path, b"intruder")
        with pytest.raises(NoAuthError):
            raw.create(f"{paths.flows}/intruder", b"{}")
        assert json.loads(raw.get(paths.flow("f"))[0])["id"] == "f"  # world may read
        with open_backend(f"zookeeper://{hosts}/{zookeeper_namespace}?retry_deadline=1") as anonymous:
            assert anonymous.load_flow("f").id == "f"
            with pytest.raises(BackendUnavailable, match="ACL"):
                anonymous.create_flow(make_flow("g"))
        with open_backend(url) as same_credentials:
            same_credentials.create_flow(make_flow("g"))


# -------------------------------------------------------------- throughput


@pytest.mark.slow
def test_submitting_2000_flows_stays_fast(zk: ZooKeeperBackend) -> None:
    flows = [make_flow(f"flow-{n:05d}") for n in range(2000)]
    start = time.perf_counter()
    for flow in flows:
        zk.create_flow(flow)
    submit = time.perf_counter() - start
    start = time.perf_counter()
    found = zk.find_runnable(10)
    first_scan = time.perf_counter() - start
    start = time.perf_counter()
    listed = zk.list_flows()
    listing = time.perf_counter() - start
    print(f"\nzookeeper: 2000 create_flow {submit:.2f}s, find_runnable {first_scan:.3f}s, "
          f"list_flows {listing:.2f}s")
    assert found == [f"flow-{n:05d}" for n in range(10)]
    assert len(listed) == 2000
    assert submit < 30  # a sanity bound; the figure is printed


# ------------------------------------------------------- in-doubt claims


def test_claim_left_in_doubt_is_released_later(zk: ZooKeeperBackend) -> None:
    """A claim call that gave up (BackendUnavailable) may still have landed;
    the next discovery call releases it so the flow is not stuck. (A claim
    whose reply was lost but whose retry succeeded: tests/contract.)"""
    zk.create_flow(make_flow("f"))
    with lose_zookeeper_claim_reply(zk, MarshallingError), pytest.raises(BackendUnavailable):
        zk.claim("f", "r1", LEASE)  # the reply cannot be read: not retried
    landed = zk.current_claim("f")
    assert landed is not None and landed.owner == "r1", "the multi was applied"
    assert zk.claims_in_doubt == {"f": landed.claim_id}
    assert zk.find_runnable(10) == ["f"]
    assert zk.current_claim("f") is None and zk.claims_in_doubt == {}


# ---------------------------------------------------------- creation index
# (zookeeper/created.py): an entry per flow made and removed with it,
# emptied folders removed, pages in creation order, and stores from before
# the index indexed once.

CREATED_DAY = 86400.0


def _index(zk: ZooKeeperBackend) -> CreationIndex:
    return zk._created


def _flow(flow_id: str, created_at: float) -> Any:
    flow = make_flow(flow_id)
    flow.created_at = flow.updated_at = created_at
    return flow


def test_an_entry_lives_and_dies_with_its_flow(zk: ZooKeeperBackend, raw: KazooClient) -> None:
    index = _index(zk)
    zk.create_flow(_flow("old", 1_700_000_000.0))
    zk.create_flow(_flow("new", 1_700_000_000.0 + 2 * CREATED_DAY))
    entry = index.entry("old", 1_700_000_000.0)
    assert raw.exists(entry) is not None and entry.startswith(f"{index.root}/20231114/")
    zk.delete_flow(zk.claim("old", "op", LEASE))
    assert raw.exists(entry) is None
    assert raw.exists(entry.rsplit("/", 2)[0]) is None  # its emptied day folder went too
    assert [f.id for f in zk.page_flows(None, None, 10)[0]] == ["new"]
    zk.create_flow(_flow("again", 1_700_000_000.0))  # into the day folder removed above
    assert [f.id for f in zk.page_flows(None, None, 10)[0]] == ["again", "new"]


def test_pages_walk_days_and_buckets_in_creation_order(zk: ZooKeeperBackend) -> None:
    stamps = [1_700_000_000.0 + offset for offset in (3 * CREATED_DAY, 0.001, 5.0, 25.0, CREATED_DAY, 0.0)]
    for number, stamp in enumerate(stamps):
        zk.create_flow(_flow(f"f{number}", stamp))
    order = [f"f{n}" for n in sorted(range(len(stamps)), key=lambda n: stamps[n])]
    seen, cursor = [], None
    for _ in range(10):
        page, cursor = zk.page_flows(None, cursor, 2)
        seen += [f.id for f in page]
        if cursor is None:
            break
    assert seen == order
    for bad in ("20231114/01700000000/x", "../../flows", "20231114/1700000000/1700000000000-a"):
        with pytest.raises(BadCursor):
            zk.page_flows(None, bad, 2)


def test_a_store_from_before_the_index_is_indexed_once(zk: ZooKeeperBackend, raw: KazooClient, url: str) -> None:
    for number in range(7):
        zk.create_flow(_flow(f"f{number}", 1_700_000_000.0 + number))
    index = _index(zk)
    raw.delete(index.root, recursive=True)  # as an older flowbaton left it: no index, no marker
    if raw.exists(index.marker):
        raw.delete(index.marker)
    with open_backend(url) as fresh:
        assert isinstance(fresh, ZooKeeperBackend)
        assert [f.id for f in fresh.page_flows(None, None, 100)[0]] == [f"f{n}" for n in range(7)]
        assert raw.exists(index.marker) is not None
        fresh.create_flow(_flow("later", 1_700_000_100.0))
        assert fresh.page_flows(None, None, 100)[0][-1].id == "later"
