"""Redis driver: the namespace's key layout, classic or sharded (keys.py,
layout.py).

The classic layout is what every namespace made before layouts existed
holds, so its key names must never move; a sharded one must keep each
script on one cluster slot (a flow's keys, its shard's indexes, the
claimer's lease for that shard) and spread shards over a cluster's
primaries. The layout is agreed through one record written once, so the
tests below also check who may write it, what refuses a contradiction and
what counts as a corrupt record.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import uuid
import zlib
from collections.abc import Iterator
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from flowbaton.backends import open_backend
from flowbaton.backends.errors import BadBackendURL, CorruptRecord
from flowbaton.backends.redis import RedisBackend
from flowbaton.backends.redis._types import Client
from flowbaton.backends.redis.keys import FlowKeys, GlobalKeys, IndexKeys, Layout, lease_key, to_bytes
from flowbaton.backends.redis.layout import AUTO, resolve_layout
from flowbaton.backends.redis.url import parse_url
from flowbaton.backends.states import SUCCESS
from tests.contract.helpers import LEASE, make_flow, make_task
from tests.servers.redis import AnyRedisCluster

FAST = {"retry_deadline": 2.0, "socket_timeout": 2.0, "socket_connect_timeout": 2.0}

# Ids that break naive tags: braces, the escape character itself, a lone
# surrogate (no UTF-8 for it), the empty id.
AWKWARD_IDS = ["plain", "a{b}c", "}", "{", "{}", "%7D", "%", "", "x\ud800y", "a:b:{c}:d", "x:flow"]
# The equal split ``redis-cli --cluster create`` makes of the slots for 3 primaries.
THREE_PRIMARIES = [(0, 5460), (5461, 10922), (10923, 16383)]


@functools.cache
def layout_of(prefix: str, shards: int) -> Layout:
    """Layouts built once: finding 256 tags near their shares' centres
    takes a few hundredths of a second."""
    return Layout(prefix, shards)


def slot(key: str) -> int:
    return key_slot(to_bytes(key))


def tag_of(key: bytes | str) -> str:
    """The hash tag Redis Cluster hashes: between the first ``{`` and the next ``}``."""
    text = key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key
    return text[text.index("{") + 1 : text.index("}", text.index("{"))]


def one_slot_keys(layout: Layout, flow_id: str, lease_id: str = "replica-1") -> list[str]:
    """What one script may touch together: a flow's keys, its shard's
    indexes and a lease of that shard."""
    keys = layout.flow(flow_id)
    index = layout.index(keys.shard)
    return [*keys.all(), index.runnable, index.created, index.seq, index.leases, layout.lease(lease_id, keys.shard)]


def namespace() -> str:
    return f"l{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def opened(url: str, **options: Any) -> Iterator[RedisBackend]:
    backend = open_backend(url, **{**FAST, **options})
    assert isinstance(backend, RedisBackend)
    try:
        yield backend
    finally:
        backend.close()


# ------------------------------------------------------------- classic layout


@pytest.mark.parametrize("flow_id", AWKWARD_IDS)
def test_the_classic_layout_keeps_the_key_names_of_existing_namespaces(flow_id: str) -> None:
    """A namespace without a layout record was written with these names: a
    change to any of them would make its flows and claims invisible."""
    layout = Layout("fb")
    assert not layout.sharded
    assert layout.flow(flow_id) == FlowKeys.of("fb", flow_id)
    assert layout.indexes == (layout.index(0),) == (IndexKeys.of("fb"),)
    assert layout.lease("r1", 0) == lease_key("fb", "r1") == "fb:lease:{r1}"


def test_the_classic_key_names_are_spelled_as_before() -> None:
    """The names themselves, written out: ``FlowKeys.of`` and
    ``IndexKeys.of`` could change together and still agree with each other."""
    keys = Layout("fb").flow("f{1}")
    assert keys.all() == ["fb:{f%7B1%7D}:flow", "fb:{f%7B1%7D}:tasks", "fb:{f%7B1%7D}:claim",
                          "fb:{f%7B1%7D}:epoch", "fb:{f%7B1%7D}:declines"]
    index = Layout("fb").index(0)
    assert [index.runnable, index.created, index.seq, index.leases] == [
        "fb:index:{fb}:runnable", "fb:index:{fb}:created", "fb:index:{fb}:seq", "fb:index:{fb}:leases"]
    glob = GlobalKeys.of("fb")
    assert [glob.seq, glob.replicas, glob.replica_expiry, glob.signal, glob.lost] == [
        "fb:index:{fb}:seq", "fb:index:{fb}:replicas", "fb:index:{fb}:replica_expiry",
        "fb:index:{fb}:signal", "fb:index:{fb}:lost"]
    assert glob.layout == "fb:index:{fb}:layout"


def test_classic_indexes_and_global_keys_share_one_slot() -> None:
    index, glob = IndexKeys.of("fb"), GlobalKeys.of("fb")
    names = [index.runnable, index.created, index.seq, index.leases,
             glob.seq, glob.replicas, glob.replica_expiry, glob.layout]
    assert {slot(name) for name in names} == {slot("{fb}")}


# ------------------------------------------------------------- sharded layout


@pytest.mark.parametrize("shards", [1, 4, 16, 256])
@pytest.mark.parametrize("flow_id", AWKWARD_IDS)
def test_a_flow_its_shard_indexes_and_its_lease_share_one_slot(shards: int, flow_id: str) -> None:
    """Every script of a sharded namespace touches only these keys together:
    on a cluster, two slots in one script is a CROSSSLOT error."""
    keys = one_slot_keys(layout_of("fb", shards), flow_id)
    assert len({slot(key) for key in keys}) == 1, keys
    assert len(set(keys)) == len(keys)


def test_sharded_keys_differ_from_classic_ones() -> None:
    """A sharded namespace never reads a classic key by accident (it is
    refused on a namespace holding classic flows, layout.py)."""
    for flow_id in AWKWARD_IDS:
        assert not set(Layout("fb", 4).flow(flow_id).all()) & set(Layout("fb").flow(flow_id).all())


def test_shard_of_is_a_crc32_of_the_id_fixed_across_versions() -> None:
    """Every replica, of any version, must find a flow in the same shard:
    these values are CRC-32 of the UTF-8 (surrogatepass) id, written out."""
    assert Layout("fb", 16).shard_of("flow-1") == 13
    assert Layout("fb", 4).shard_of("flow-1") == 1
    assert Layout("fb", 16).shard_of("order/42") == 0
    assert Layout("fb", 16).shard_of("x\ud800y") == 5
    assert Layout("fb").shard_of("flow-1") == 0
    assert Layout("other", 16).shard_of("flow-1") == 13  # the prefix plays no part


@pytest.mark.parametrize("shards", [1, 3, 16, 256])
def test_shard_of_stays_in_range_and_uses_every_shard(shards: int) -> None:
    layout = layout_of("fb", shards)
    found = {layout.shard_of(f"flow-{n}") for n in range(20 * shards)}
    assert found <= set(range(shards))
    if shards <= 16:  # 20 ids a shard: a CRC that missed one would be badly skewed
        assert found == set(range(shards))
    for flow_id in AWKWARD_IDS:
        assert layout.flow(flow_id).shard == layout.shard_of(flow_id) == zlib.crc32(to_bytes(flow_id)) % shards


@pytest.mark.parametrize("prefix", ["fb", "app", "tenant-42:jobs"])
@pytest.mark.parametrize("shards", [3, 16, 100])
def test_each_shard_tag_lies_in_its_own_share_of_the_slots(prefix: str, shards: int) -> None:
    layout = Layout(prefix, shards)
    for shard, index in enumerate(layout.indexes):
        low = shard * REDIS_CLUSTER_HASH_SLOTS // shards
        high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
        assert low <= slot(index.runnable) < high, (shard, index)
    assert len({tag_of(index.runnable) for index in layout.indexes}) == shards


def primary_shares(layout: Layout, ranges: list[tuple[int, int]]) -> list[int]:
    """How many of ``layout``'s shards each slot range (a primary) holds."""
    return [sum(low <= slot(index.runnable) <= high for index in layout.indexes) for low, high in ranges]


def test_sixteen_shards_put_five_six_five_on_three_equal_primaries() -> None:
    """Each tag lies near the centre of its shard's sixteenth, so shards 5
    and 10, whose sixteenths straddle a boundary between primaries, land
    on the middle one whatever the prefix: 5, 6 and 5, never a split that
    depends on a CRC's luck."""
    for n in range(300):
        assert primary_shares(layout_of(f"ns{n}", 16), THREE_PRIMARIES) == [5, 6, 5], n


@pytest.mark.parametrize("primaries", [4, 5, 6])
def test_sixteen_shards_spread_evenly_over_other_equal_clusters(primaries: int) -> None:
    ranges = [(i * REDIS_CLUSTER_HASH_SLOTS // primaries, (i + 1) * REDIS_CLUSTER_HASH_SLOTS // primaries - 1)
              for i in range(primaries)]
    for n in range(50):
        shares = primary_shares(layout_of(f"ns{n}", 16), ranges)
        assert max(shares) - min(shares) <= 1 + (16 % primaries != 0), shares


# The characters that matter for tags and escaping, mixed with any other
# (lone surrogates included: the default text strategy leaves them out).
_ID_CHARS = st.one_of(
    st.sampled_from("{}%:u7BD"),
    st.characters(categories=["Cs"]),
    st.characters(codec=None, exclude_categories=[]),
)
flow_ids = st.text(_ID_CHARS, max_size=12)
layouts = st.sampled_from([layout_of("fb", shards) for shards in (0, 1, 4, 16, 256)])


@given(layouts, flow_ids)
def test_any_flow_id_keeps_all_its_keys_in_one_slot(layout: Layout, flow_id: str) -> None:
    keys = one_slot_keys(layout, flow_id) if layout.sharded else layout.flow(flow_id).all()
    assert len({slot(key) for key in keys}) == 1, keys


@given(layouts, flow_ids, flow_ids)
def test_distinct_flow_ids_never_share_a_key(layout: Layout, first: str, second: str) -> None:
    if first == second:
        assert layout.flow(first) == layout.flow(second)
        return
    assert not set(layout.flow(first).all()) & set(layout.flow(second).all())


# ------------------------------------------------ resolution, one Redis server


@pytest.mark.redis
def test_a_new_namespace_without_shards_records_the_classic_layout(redis_server: Any) -> None:
    """The classic layout is written down at first open, so a later opener
    asking for shards of a namespace still empty finds it taken."""
    prefix = namespace()
    with opened(redis_server.url(namespace=prefix)) as backend:
        assert backend.layout == Layout(prefix)
        with redis_server.client() as client:
            assert client.keys(f"{prefix}:*") == [GlobalKeys.of(prefix).layout.encode()]
            assert json.loads(client.get(GlobalKeys.of(prefix).layout)) == {"shards": 0}
        backend.create_flow(make_flow("f"))
    with redis_server.client() as client:
        assert client.exists(FlowKeys.of(prefix, "f").flow) == 1


@pytest.mark.redis
def test_shards_on_a_new_namespace_are_stored_and_then_imposed(redis_server: Any) -> None:
    """The first opener's choice is the namespace's: later openers read it,
    and one asking for another count is refused rather than ignored (it
    would look for flows in the wrong shards)."""
    prefix = namespace()
    layout_key = GlobalKeys.of(prefix).layout
    with opened(redis_server.url(namespace=prefix, shards=4)) as first:
        assert first.layout == Layout(prefix, 4)
        with redis_server.client() as client:
            assert json.loads(client.get(layout_key)) == {"shards": 4}
    with opened(redis_server.url(namespace=prefix)) as second:
        assert second.layout.shards == 4
    with opened(redis_server.url(namespace=prefix, shards=4)) as same:
        assert same.layout.shards == 4
    with pytest.raises(BadBackendURL, match=r"'shards': 8.* has 4"):
        open_backend(redis_server.url(namespace=prefix, shards=8), **FAST)
    with redis_server.client() as client:
        assert json.loads(client.get(layout_key)) == {"shards": 4}


@pytest.mark.redis
def test_openers_racing_on_a_new_namespace_agree_on_the_first_write(redis_server: Any) -> None:
    """SET NX: of openers asking 4 and 8 at once, exactly those asking what
    was stored first get a backend, and none rewrote the record."""
    prefix = namespace()
    start = threading.Barrier(8)
    got: dict[int, list[object]] = {4: [], 8: []}

    def open_with(shards: int) -> None:
        start.wait(timeout=10)
        try:
            with opened(redis_server.url(namespace=prefix, shards=shards)) as backend:
                got[shards].append(backend.layout.shards)
        except BadBackendURL as err:
            got[shards].append(err)

    threads = [threading.Thread(target=open_with, args=(4 if n % 2 else 8,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads)
    with redis_server.client() as client:
        stored = json.loads(client.get(GlobalKeys.of(prefix).layout))["shards"]
    other = 8 if stored == 4 else 4
    assert got[stored] == [stored] * 4
    assert len(got[other]) == 4 and all(isinstance(err, BadBackendURL) for err in got[other]), got


class _ReadBeforeTheOtherWrite:
    """A real client whose first GET answers as it would have a moment
    earlier (nothing there): the interleaving where another opener's SET
    lands between our GET and our SET, made certain instead of lucky."""

    def __init__(self, client: Any) -> None:
        self._client, self._fresh = client, True

    def get(self, key: str) -> Any:
        if self._fresh:
            self._fresh = False
            return None
        return self._client.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.redis
@pytest.mark.parametrize(("wanted", "cluster"), [
    pytest.param(4, False, id="asked-4"), pytest.param(AUTO, True, id="auto-on-a-cluster"),
    pytest.param(8, False, id="asked-8")])
def test_an_opener_that_lost_the_race_takes_the_stored_layout(redis_server: Any, wanted: int, cluster: bool) -> None:
    """The record is written with SET NX and read back: the opener that saw
    no record but wrote second neither overwrites the first one's record
    nor runs with its own choice."""
    prefix = namespace()
    layout_key = GlobalKeys.of(prefix).layout
    with redis_server.client() as client:
        client.set(layout_key, '{"shards": 8}')  # the other opener's write
        late = cast(Client, _ReadBeforeTheOtherWrite(client))
        if wanted == 8 or wanted == AUTO:
            assert resolve_layout(late, prefix, wanted, cluster, "test") == Layout(prefix, 8)
        else:
            with pytest.raises(BadBackendURL, match=r"'shards': 4.* has 8"):
                resolve_layout(late, prefix, wanted, cluster, "test")
        assert json.loads(client.get(layout_key)) == {"shards": 8}


@pytest.mark.redis
def test_openers_with_and_without_shards_never_run_two_layouts(redis_server: Any) -> None:
    """A rollout that adds ``shards`` to one replica of a new, empty
    namespace while another runs without it: whichever opened first, both
    must use one layout, or flows one creates are invisible to the other
    (and to every later opener)."""
    prefix = namespace()
    with opened(redis_server.url(namespace=prefix)) as plain:
        try:
            sharded = open_backend(redis_server.url(namespace=prefix, shards=4), **FAST)
        except BadBackendURL:
            return  # refused: one layout, the classic one
        try:
            assert isinstance(sharded, RedisBackend)
            plain.create_flow(make_flow("made-by-plain"))
            sharded.create_flow(make_flow("made-by-sharded"))
            with opened(redis_server.url(namespace=prefix)) as later:
                seen = {flow.id for flow in later.list_flows()}
            assert seen == {"made-by-plain", "made-by-sharded"}, (plain.layout, sharded.layout)
        finally:
            sharded.close()


@pytest.mark.redis
@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "from-before-layouts"])
def test_shards_are_refused_on_a_namespace_holding_classic_flows(redis_server: Any, recorded: bool) -> None:
    """Switching a namespace with flows to shards would strand them where
    no sharded replica looks; the namespace stays classic, untouched, both
    when its layout is recorded and when it was made before layouts were."""
    prefix = namespace()
    with opened(redis_server.url(namespace=prefix)) as classic:
        classic.create_flow(make_flow("old"))
    layout_key = GlobalKeys.of(prefix).layout
    with redis_server.client() as client:
        if not recorded:
            client.delete(layout_key)
        before = client.get(layout_key)
    with pytest.raises(BadBackendURL, match=r"'shards'.*classic"):
        open_backend(redis_server.url(namespace=prefix, shards=4), **FAST)
    with redis_server.client() as client:
        assert client.get(layout_key) == before
    with opened(redis_server.url(namespace=prefix)) as again:
        assert again.layout == Layout(prefix)
        assert again.load_flow("old").id == "old"


@pytest.mark.redis
@pytest.mark.parametrize("shards", [None, 4])
@pytest.mark.parametrize("record", [b"not json", b'{"shards": "x"}', b'{"shards": 5000}', b'{"shards": -1}',
                                    b'{"shards": true}', b"[4]", b"\xff\xfe"])
def test_a_corrupt_layout_record_is_reported_not_guessed(redis_server: Any, record: bytes, shards: int | None) -> None:
    """Guessing a layout would put a replica's flows in other keys than its
    peers'; the record is named for a person to repair, and left as it is."""
    prefix = namespace()
    layout_key = GlobalKeys.of(prefix).layout
    with redis_server.client() as client:
        client.set(layout_key, record)
    options = {} if shards is None else {"shards": shards}
    with pytest.raises(CorruptRecord) as raised:
        open_backend(redis_server.url(namespace=prefix, **options), **FAST)
    assert layout_key in raised.value.where
    with redis_server.client() as client:
        assert client.get(layout_key) == record


@pytest.mark.parametrize("value", ["-2", "257", "2000", "many"])
def test_a_shard_count_out_of_range_is_refused_by_the_url(value: str) -> None:
    with pytest.raises(BadBackendURL, match="shards"):
        parse_url(f"redis://127.0.0.1:1/0?shards={value}")


@pytest.mark.parametrize("value", [-1, 0, 1, 256])
def test_the_shard_counts_at_the_bounds_are_accepted(value: int) -> None:
    assert parse_url(f"redis://127.0.0.1:1/0?shards={value}").options["shards"] == value


@pytest.mark.redis
def test_a_sharded_namespace_works_on_one_redis_server(redis_server: Any) -> None:
    """The sharded layout is not cluster-only: every operation finds its
    flows in their shards, and nothing is written under a classic key."""
    prefix = namespace()
    ids = [f"flow-{n}" for n in range(12)] + ["a{b}c", "x\ud800y"]
    with opened(redis_server.url(namespace=prefix, shards=4)) as backend:
        layout = backend.layout
        assert {layout.shard_of(flow_id) for flow_id in ids} == {0, 1, 2, 3}
        for flow_id in ids:
            backend.create_flow(make_flow(flow_id))
        assert sorted(backend.find_runnable(100)) == sorted(ids)
        assert [flow.id for flow in backend.list_flows()] == ids  # oldest first, over every shard

        pages, cursor = [], None
        while True:
            page, cursor = backend.page_flows(None, cursor, 5)
            pages.append([flow.id for flow in page])
            if cursor is None:
                break
        assert pages == [ids[0:5], ids[5:10], ids[10:14]]

        tokens = {flow_id: backend.claim(flow_id, "r1", LEASE) for flow_id in ids}
        assert backend.find_runnable(100) == []
        assert sorted(claim.flow_id for claim in backend.list_claims()) == sorted(ids)
        for flow_id, token in tokens.items():
            backend.save_tasks(token, [make_task("a", state=SUCCESS, result=flow_id), make_task("b")])
            assert backend.load_tasks(flow_id)["a"].result == flow_id

        for flow_id in ids[:7]:
            backend.release(tokens[flow_id])
        assert sorted(backend.find_runnable(100)) == sorted(ids[:7])
        assert sorted(claim.flow_id for claim in backend.list_claims()) == sorted(ids[7:])

        with redis_server.client() as client:
            tags = {tag_of(key) for key in client.keys(f"{prefix}:*")}
        assert tags <= {tag_of(index.runnable) for index in layout.indexes} | {prefix}
        assert tags & {tag_of(index.runnable) for index in layout.indexes}

        for flow_id in ids:
            backend.delete_flow(backend.claim(flow_id, "cleanup", LEASE, force=True))
        assert backend.list_flows() == [] and backend.find_runnable(100) == [] and backend.list_claims() == []


# -------------------------------------------------------------- Redis Cluster


@pytest.mark.redis
def test_a_new_namespace_on_a_cluster_gets_sixteen_shards(redis_cluster: AnyRedisCluster) -> None:
    prefix = namespace()
    with opened(redis_cluster.url(prefix)) as backend:
        assert backend.layout == Layout(prefix, 16)
    with redis_cluster.client() as client:
        assert json.loads(client.get(GlobalKeys.of(prefix).layout)) == {"shards": 16}


@pytest.mark.redis
def test_the_classic_layout_is_refused_on_a_cluster(redis_cluster: AnyRedisCluster) -> None:
    """Its claim script reads a lease key of another slot: every claim would
    fail with CROSSSLOT, so it is refused when opening, asked or stored."""
    prefix = namespace()
    with pytest.raises(BadBackendURL, match=r"'shards'.*classic.*cross slots"):
        open_backend(redis_cluster.url(prefix, shards=0), **FAST)
    with redis_cluster.client() as client:
        assert client.exists(GlobalKeys.of(prefix).layout) == 0
        client.set(GlobalKeys.of(prefix).layout, '{"shards": 0}')
    with pytest.raises(BadBackendURL, match=r"'shards'.*classic.*cross slots"):
        open_backend(redis_cluster.url(prefix), **FAST)


@pytest.mark.redis
def test_a_cluster_url_names_database_zero_only(redis_cluster: AnyRedisCluster) -> None:
    url = redis_cluster.url(namespace())
    assert "/?" in url
    with pytest.raises(BadBackendURL, match="database 0 only"):
        open_backend(url.replace("/?", "/1?"))
    with pytest.raises(BadBackendURL, match="database 0 only"):
        parse_url("rediss+cluster://h1:7000,h2:7001/3")


@pytest.mark.redis
def test_the_shards_fall_four_to_six_to_each_primary_of_the_cluster(redis_cluster: AnyRedisCluster) -> None:
    """By the cluster's own slot map, not the split we expect it to have
    (the bounds: ``test_sixteen_shards_put_four_to_six_...``)."""
    with redis_cluster.client() as client:
        ranges = client.cluster_slots()
    by_primary: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for (low, high), owner in ranges.items():
        by_primary.setdefault(tuple(owner["primary"]), []).append((low, high))
    assert len(by_primary) == 3
    for prefix in ("fb", namespace()):
        shares = [sum(primary_shares(layout_of(prefix, 16), owned)) for owned in by_primary.values()]
        assert sum(shares) == 16 and all(4 <= share <= 6 for share in shares), (prefix, shares, ranges)


@pytest.mark.redis
def test_a_namespace_spreads_its_keys_over_every_primary(redis_cluster: AnyRedisCluster) -> None:
    """The point of sharding: no primary carries the whole namespace."""
    prefix = namespace()
    ids = [f"job-{n}" for n in range(200)]
    with opened(redis_cluster.url(prefix)) as backend:
        for flow_id in ids:
            backend.create_flow(make_flow(flow_id))
        assert len(backend.claim_many(ids, "r1", LEASE)) == len(ids)
        assert sorted(claim.flow_id for claim in backend.list_claims()) == sorted(ids)
    with redis_cluster.client() as client:
        counts = {}
        for node in client.get_primaries():
            server = client.get_redis_connection(node)
            counts[node.name] = sum(1 for _ in server.scan_iter(match=f"{prefix}:*", count=1000))
    total = sum(counts.values())
    assert total >= 3 * len(ids)  # flow, claim and epoch keys at least
    assert len(counts) == 3 and all(0 < count <= total / 2 for count in counts.values()), counts
