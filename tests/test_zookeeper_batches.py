"""ZooKeeper's renew_claims and claim_many: what they cost in requests, and
that the watches standing in for per-claim renewals tell the truth (forced
claims, dropped connections, lost sessions, races). Real servers; requests
counted with ``ZooKeeperBackend.requests``; waits are conditions with
deadlines."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowbaton.backends import CONNECTED, LOST, SUSPENDED, open_backend
from flowbaton.backends.errors import BackendUnavailable
from flowbaton.backends.records import ClaimToken
from flowbaton.backends.zookeeper import ZooKeeperBackend
from flowbaton.backends.zookeeper.client import Node, Stat, Unanswered
from flowbaton.backends.zookeeper.codec import claim_record
from flowbaton.backends.zookeeper.held import HeldClaims
from flowbaton.testing.chaos.proxy import ProxyHub
from tests.contract.faults import lose_zookeeper_claim_reply
from tests.contract.helpers import LEASE, make_flow, make_task
from tests.servers.zookeeper import expire_session, wait_until
from tests.test_zookeeper_faults import Events

pytestmark = pytest.mark.zookeeper


def _open(url: str) -> ZooKeeperBackend:
    backend = open_backend(url)
    assert isinstance(backend, ZooKeeperBackend)
    return backend


@pytest.fixture
def url(zookeeper_server: Any, zookeeper_namespace: str) -> str:
    return str(zookeeper_server.url(zookeeper_namespace))


@pytest.fixture
def replica(url: str) -> Iterator[ZooKeeperBackend]:
    backend = _open(url)
    yield backend
    backend.close()


@pytest.fixture
def operator(url: str) -> Iterator[ZooKeeperBackend]:
    """Another session on the same tree: forces claims, creates flows."""
    backend = _open(url)
    yield backend
    backend.close()


def _flows(backend: ZooKeeperBackend, count: int) -> list[str]:
    ids = [f"f{i:04d}" for i in range(count)]
    for flow_id in ids:
        backend.create_flow(make_flow(flow_id))
    return ids


def _sent(backend: ZooKeeperBackend, call: Callable[[], object]) -> tuple[Any, Counter[str]]:
    """What ``call`` returned, and the requests it sent by kind."""
    before = backend.requests
    result = call()
    return result, backend.requests - before


def _all_vouched(backend: ZooKeeperBackend, tokens: list[ClaimToken]) -> bool:
    return not backend.held_claims.unsure(tokens, backend.session.session_id)


# ------------------------------------------------------------ renew_claims


def test_renewing_fifty_claims_in_steady_state_is_one_request(
    replica: ZooKeeperBackend, operator: ZooKeeperBackend
) -> None:
    tokens = replica.claim_many(_flows(operator, 50), "r1", LEASE)
    assert len(tokens) == 50
    wait_until(lambda: _all_vouched(replica, tokens), 10, "every claim's watch to answer")
    for _ in range(3):
        lost, sent = _sent(replica, lambda: replica.renew_claims(tokens, LEASE))
        assert lost == []
        assert sent == Counter({"exists_many": 1})  # proof of the session, nothing per claim
    replica.save_task(tokens[7], make_task("t"))  # the claims are really current


def test_a_claim_not_yet_vouched_for_is_read_in_the_same_one_request(
    replica: ZooKeeperBackend, operator: ZooKeeperBackend
) -> None:
    ids = _flows(operator, 20)
    tokens = replica.claim_many(ids, "r1", LEASE)
    lost, sent = _sent(replica, lambda: replica.renew_claims(tokens, LEASE))
    assert lost == []
    assert sum(sent.values()) == 1 and sent.keys() <= {"exists_many", "get_many"}


def test_a_forced_claim_is_reported_by_the_next_renewal(
    replica: ZooKeeperBackend, operator: ZooKeeperBackend
) -> None:
    tokens = replica.claim_many(_flows(operator, 10), "r1", LEASE)
    wait_until(lambda: _all_vouched(replica, tokens), 10, "every claim's watch to answer")
    forced = operator.claim(tokens[4].flow_id, "operator", LEASE, force=True)
    session = replica.session.session_id
    wait_until(lambda: not replica.held_claims.vouches(tokens[4], session), 10, "the watch to fire")
    lost, sent = _sent(replica, lambda: replica.renew_claims(tokens, LEASE))
    assert lost == [tokens[4]]
    assert sent == Counter({"get_many": 1})  # the one unsure claim, read: that is the proof too
    info = operator.current_claim(tokens[4].flow_id)
    assert info is not None and info.claim_id == forced.claim_id
    assert len(replica.held_claims) == 9  # the lost one is forgotten
    lost, sent = _sent(replica, lambda: replica.renew_claims(tokens[:4] + tokens[5:], LEASE))
    assert lost == [] and sent == Counter({"exists_many": 1})


def test_renew_claims_hears_a_watch_that_fires_just_before_its_reply(
    replica: ZooKeeperBackend, operator: ZooKeeperBackend
) -> None:
    """No waiting for the watch here: whether its event was handled before
    or after the call began, the call reports the forced claim."""
    tokens = replica.claim_many(_flows(operator, 3), "r1", LEASE)
    wait_until(lambda: _all_vouched(replica, tokens), 10, "every claim's watch to answer")
    operator.claim(tokens[1].flow_id, "operator", LEASE, force=True)
    assert replica.renew_claims(tokens, LEASE) == [tokens[1]]


def test_released_claims_are_lost_and_their_watches_forgotten(
    replica: ZooKeeperBackend, operator: ZooKeeperBackend
) -> None:
    tokens = replica.claim_many(_flows(operator, 10), "r1", LEASE)
    for token in tokens[:6]:
        replica.release(token)
    assert len(replica.held_claims) == 4
    assert replica.renew_claims(tokens, LEASE) == tokens[:6]
    fresh = replica.claim(tokens[0].flow_id, "r1", LEASE)  # the old watch firing later changes nothing
    wait_until(lambda: _all_vouched(replica, [fresh, *tokens[6:]]), 10, "the new watch to answer")
    assert replica.renew_claims([fresh, *tokens[6:]], LEASE) == []


def test_after_a_reconnect_claims_are_read_again_in_one_request(
    zookeeper_server: Any, zookeeper_namespace: str, operator: ZooKeeperBackend
) -> None:
    """The connection is reset for real (a TCP proxy aborts it); the session
    survives, kazoo drops every watch. The next renewal reads every claim in
    one batched read, reports the one forced while disconnected, and arms
    the watches again; the one after is back to one cheap request."""
    host, port = zookeeper_server.hosts.split(",")[0].rsplit(":", 1)
    hub = ProxyHub()
    proxy = hub.add("replica", lambda: (host, int(port)))
    url = zookeeper_server.url(zookeeper_namespace).replace(zookeeper_server.hosts, f"127.0.0.1:{proxy.port}")
    replica = _open(url)
    events = Events()
    replica.add_state_listener(events)
    try:
        tokens = replica.claim_many(_flows(operator, 30), "r1", LEASE)
        wait_until(lambda: _all_vouched(replica, tokens), 10, "every claim's watch to answer")
        hub.cut("replica", "reset")
        wait_until(lambda: events.has(SUSPENDED), 10, "SUSPENDED once the connection is reset")
        operator.claim(tokens[3].flow_id, "operator", LEASE, force=True)
        hub.heal("replica")
        wait_until(lambda: events.has(SUSPENDED, CONNECTED), 20, "CONNECTED again")
        assert not events.has(LOST)
        lost, sent = _sent(replica, lambda: replica.renew_claims(tokens, LEASE))
        assert lost == [tokens[3]]
        assert sent == Counter({"get_many": 1, "watch": 29})  # one read; the watches armed again
        kept = tokens[:3] + tokens[4:]
        wait_until(lambda: _all_vouched(replica, kept), 10, "the new watches to answer")
        lost, sent = _sent(replica, lambda: replica.renew_claims(kept, LEASE))
        assert lost == [] and sent == Counter({"exists_many": 1})
        replica.save_task(kept[0], make_task("t"))
    finally:
        replica.close()
        hub.close()


def test_a_lost_session_loses_every_claim(replica: ZooKeeperBackend, operator: ZooKeeperBackend) -> None:
    events = Events()
    replica.add_state_listener(events)
    tokens = replica.claim_many(_flows(operator, 5), "r1", LEASE)
    expire_session(replica)
    wait_until(lambda: events.has(LOST, CONNECTED), 20, "LOST then a new session")
    assert replica.renew_claims(tokens, LEASE) == tokens
    assert len(replica.held_claims) == 0


# -------------------------------------------------------------- claim_many


def test_claim_many_of_two_hundred_flows_takes_a_handful_of_round_trips(
    replica: ZooKeeperBackend, operator: ZooKeeperBackend
) -> None:
    ids = _flows(operator, 200)
    tokens, sent = _sent(replica, lambda: replica.claim_many(ids, "r1", LEASE))
    assert [t.flow_id for t in tokens] == ids
    # One batched read and four multis of 50 are waited for; the 200 watch
    # reads are sent behind them and answered in the background.
    assert sent == Counter({"get_many": 1, "commit": 4, "watch": 200})
    claims = {c.flow_id: c for c in operator.list_claims()}
    assert all((claims[t.flow_id].claim_id, claims[t.flow_id].epoch) == (t.claim_id, t.epoch) for t in tokens)


def test_claim_many_rereads_a_batch_that_lost_a_race(
    replica: ZooKeeperBackend, operator: ZooKeeperBackend
) -> None:
    """A flow claimed between the batched read and the multi fails the whole
    multi; the batch is read again and the others are still granted."""
    ids = _flows(operator, 10)
    real = replica.session.get_many
    raced: list[ClaimToken] = []

    def read_then_race(paths: Any) -> Any:
        nodes = real(paths)
        if not raced:
            raced.append(operator.claim(ids[5], "other", LEASE))
        return nodes

    replica.session.get_many = read_then_race  # type: ignore[method-assign]
    try:
        tokens, sent = _sent(replica, lambda: replica.claim_many(ids, "r1", LEASE))
    finally:
        del replica.session.get_many
    assert [t.flow_id for t in tokens] == ids[:5] + ids[6:]
    assert sent["commit"] == 2 and sent["get_many"] == 2
    info = operator.current_claim(ids[5])
    assert info is not None and info.claim_id == raced[0].claim_id


def test_claim_many_resolves_a_lost_reply_by_reading_back(
    replica: ZooKeeperBackend, operator: ZooKeeperBackend
) -> None:
    ids = _flows(operator, 8)
    with lose_zookeeper_claim_reply(replica):
        tokens = replica.claim_many(ids, "r1", LEASE)
    assert [t.flow_id for t in tokens] == ids
    for token in tokens:  # the claims that landed, not second ones
        info = operator.current_claim(token.flow_id)
        assert info is not None and (info.claim_id, info.epoch) == (token.claim_id, token.epoch)
        assert token.epoch == 1
    assert replica.renew_claims(tokens, LEASE) == []


def test_two_replicas_taking_over_the_same_orphans_share_them(url: str, operator: ZooKeeperBackend) -> None:
    ids = _flows(operator, 120)
    replicas = [_open(url) for _ in range(2)]
    results: dict[int, list[ClaimToken]] = {}
    try:
        threads = [
            threading.Thread(target=lambda i=i: results.__setitem__(i, replicas[i].claim_many(ids, f"r{i}", LEASE)))
            for i in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        granted = results[0] + results[1]
        assert sorted(t.flow_id for t in granted) == ids  # each flow exactly once
        for i, replica in enumerate(replicas):
            assert replica.renew_claims(results[i], LEASE) == []
    finally:
        for replica in replicas:
            replica.close()


def test_claim_many_cuts_batches_to_the_request_size_limit(url: str, operator: ZooKeeperBackend) -> None:
    ids = _flows(operator, 10)
    small = open_backend(url, max_record_bytes=4096)
    assert isinstance(small, ZooKeeperBackend)
    try:
        tokens, sent = _sent(small, lambda: small.claim_many(ids, "r1", LEASE))
        assert [t.flow_id for t in tokens] == ids
        assert sent["commit"] >= 3  # ~1 KB counted per claim: a few claims per multi
    finally:
        small.close()


# ------------------------------------------- the bookkeeping, without a server


class _Answer:
    """A watch's read as ``HeldClaims`` sees it."""

    def __init__(self, node: Node | None, ready: bool = True) -> None:
        self._node, self.ready = node, ready

    def node(self) -> Node | None:
        return self._node


class _Failed(_Answer):
    def __init__(self) -> None:
        super().__init__(None)

    def node(self) -> Node | None:
        raise Unanswered("connection loss")


def _claim_node(token: ClaimToken, session: int) -> Node:
    return Node(claim_record(token.claim_id, token.epoch, token.owner), Stat(0, 1, session))


TOKEN = ClaimToken("f", "r1#abc", 3)


def test_a_watch_vouches_once_its_read_saw_the_claim() -> None:
    held = HeldClaims()
    arm = held.track(TOKEN, 7)
    assert held.unsure([TOKEN], 7) == [TOKEN]  # sent, not answered
    held.armed("f", arm, _Answer(_claim_node(TOKEN, 7)))
    assert held.unsure([TOKEN], 7) == []
    assert held.unsure([TOKEN], 8) == [TOKEN]  # another session: our ephemerals died with ours
    assert held.confirm(TOKEN, 7) is None  # a standing watch is not sent again


def test_a_watch_that_fired_before_its_answer_was_looked_at_vouches_for_nothing() -> None:
    held = HeldClaims()
    arm = held.track(TOKEN, 7)
    held.armed("f", arm, _Answer(_claim_node(TOKEN, 7)))
    held.fired("f", arm)
    assert held.unsure([TOKEN], 7) == [TOKEN]
    assert held.confirm(TOKEN, 7) is not None  # read current again: a new watch is due


def test_events_of_an_older_watch_or_an_untracked_flow_are_ignored() -> None:
    held = HeldClaims()
    old = held.track(TOKEN, 7)
    new = held.track(TOKEN, 7)
    held.armed("f", old, _Answer(None))
    held.armed("f", new, _Answer(_claim_node(TOKEN, 7)))
    held.fired("f", old)
    held.fired("gone", 1)
    assert held.unsure([TOKEN], 7) == []
    held.forget(TOKEN)
    held.fired("f", new)  # a released claim's watch firing later
    assert len(held) == 0


def test_a_watch_read_that_saw_another_claim_or_failed_vouches_for_nothing() -> None:
    other = ClaimToken("f", "op#xyz", 4)
    for answer in (_Answer(_claim_node(other, 7)), _Answer(_claim_node(TOKEN, 9)), _Answer(None), _Failed()):
        held = HeldClaims()
        held.armed("f", held.track(TOKEN, 7), answer)
        assert held.unsure([TOKEN], 7) == [TOKEN]


def test_claim_many_keeps_what_it_took_when_a_later_batch_cannot_be_sent(
    url: str, operator: ZooKeeperBackend
) -> None:
    """The first batch lands; every multi after it fails until the retry
    deadline. The first batch's tokens are returned, the rest is in doubt
    (released later if it landed, as ``claim`` does); with nothing taken at
    all, the call raises."""
    from kazoo.exceptions import ConnectionLoss

    ids = _flows(operator, 60)
    replica = open_backend(url, retry_deadline=1)
    assert isinstance(replica, ZooKeeperBackend)
    real = replica.session.commit
    commits: list[int] = []

    def first_only(ops: Any) -> Any:
        commits.append(len(ops))
        if len(commits) > 1:
            raise ConnectionLoss("injected: the multi never left")
        return real(ops)

    replica.session.commit = first_only  # type: ignore[method-assign]
    try:
        tokens = replica.claim_many(ids, "r1", LEASE)
        assert [t.flow_id for t in tokens] == ids[:50]
        assert sorted(replica.claims_in_doubt) == ids[50:]
        with pytest.raises(BackendUnavailable):
            replica.claim_many(ids[50:], "r1", LEASE)
    finally:
        del replica.session.commit
    try:
        assert [t.flow_id for t in replica.claim_many(ids[50:], "r1", LEASE)] == ids[50:]
        assert replica.claims_in_doubt == {}
        assert replica.renew_claims(tokens, LEASE) == []
    finally:
        replica.close()
