"""Redis driver specifics: zombies, lost servers, stale indexes, read-back
after lost replies, round trips, and corrupt records written by others."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.connection

from flowbaton.backends import Capability, open_backend
from flowbaton.backends.errors import BackendUnavailable, ClaimLost, CorruptRecord
from flowbaton.backends.redis import RedisBackend
from flowbaton.backends.redis import index as index_module
from flowbaton.backends.redis.keys import FlowKeys, IndexKeys
from flowbaton.backends.states import RUNNING, SUCCESS
from tests.contract.helpers import DEADLINE as WAIT
from tests.contract.helpers import LEASE, make_flow, make_task, wait_until, woken_by, woken_by_a_submit
from tests.servers.redis import LocalRedis

pytestmark = pytest.mark.redis

DEADLINE = 2.0  # retry deadline of the backends below
FAST = {"retry_deadline": DEADLINE, "socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def _open(server: Any, namespace: str = "t", **options: Any) -> RedisBackend:
    backend = open_backend(server.url(namespace=namespace), **{**FAST, **options})
    assert isinstance(backend, RedisBackend)
    return backend


@pytest.fixture
def private(make_redis_server: Callable[..., LocalRedis]) -> LocalRedis:
    """A server of our own: these tests kill, pause and wipe it."""
    return make_redis_server()


@pytest.fixture
def backend(private: LocalRedis) -> Iterator[RedisBackend]:
    opened = _open(private)
    yield opened
    opened.close()


# ------------------------------------------------------------------ zombie


def test_zombie_owner_cannot_write_after_takeover(private: LocalRedis) -> None:
    """The owner stops renewing (paused) past its lease; another replica
    takes over; every write of the old owner is refused by the Lua check."""
    owner, other = _open(private), _open(private)
    try:
        owner.create_flow(make_flow("f"))
        zombie = owner.claim("f", "old", 0.3)
        owner.save_task(zombie, make_task("t", state=RUNNING))
        wait_until(lambda: owner.current_claim("f") is None, "the old lease to run out")
        token = other.claim("f", "new", LEASE)
        assert token.epoch > zombie.epoch
        before = (owner.load_flow("f"), owner.load_tasks("f"))

        for write in (
            lambda: owner.save_task(zombie, make_task("t", state=SUCCESS, result=1)),
            lambda: owner.save_task(zombie, make_task("other")),
            lambda: owner.save_flow(zombie, make_flow("f", state=SUCCESS)),
            lambda: owner.renew(zombie, LEASE),
            lambda: owner.release(zombie),
            lambda: owner.delete_flow(zombie),
        ):
            with pytest.raises(ClaimLost):
                write()

        assert (other.load_flow("f"), other.load_tasks("f")) == before
        claim = other.current_claim("f")
        assert claim is not None and (claim.claim_id, claim.epoch) == (token.claim_id, token.epoch)
        other.save_task(token, make_task("t", state=SUCCESS, result=2))
        assert other.load_tasks("f")["t"].result == 2
    finally:
        owner.close()
        other.close()


def test_same_epoch_with_another_claim_id_is_refused(backend: RedisBackend) -> None:
    """The whole token is compared: an epoch that repeats (as after a
    failover that lost an INCR) does not let a second claimer write."""
    backend.create_flow(make_flow("f"))
    token = backend.claim("f", "r1", LEASE)
    forged = type(token)(token.flow_id, "r2#000000000000", token.epoch)
    with pytest.raises(ClaimLost):
        backend.save_task(forged, make_task("t"))
    assert backend.load_tasks("f") == {}


# ------------------------------------------------------- server lost/empty


def _held(backend: RedisBackend) -> Any:
    backend.create_flow(make_flow("f"))
    token = backend.claim("f", "r1", LEASE)
    backend.save_task(token, make_task("t", state=RUNNING))
    return token


def _assert_all_writes_lost(backend: RedisBackend, token: Any) -> None:
    for write in (
        lambda: backend.renew(token, LEASE),
        lambda: backend.save_task(token, make_task("t", state=SUCCESS)),
        lambda: backend.save_flow(token, make_flow("f", state=SUCCESS)),
        lambda: backend.release(token),
    ):
        with pytest.raises(ClaimLost):
            write()


def test_flushall_under_a_holder_loses_the_claim(private: LocalRedis, backend: RedisBackend) -> None:
    token = _held(backend)
    private.flushall()
    _assert_all_writes_lost(backend, token)
    with private.client() as client:
        assert client.keys("t:*") == [], "a refused write must not recreate keys"


def test_restart_without_data_under_a_holder(
    private: LocalRedis, backend: RedisBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """Down: BackendUnavailable, logged, within the deadline. Back but empty
    (scripts gone too, so NOSCRIPT is handled on the way): ClaimLost."""
    token = _held(backend)
    private.kill()
    with caplog.at_level(logging.WARNING, logger="flowbaton"):
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="renew"):
            backend.renew(token, LEASE)
        assert time.monotonic() - started < DEADLINE + 2
    assert any("unavailable" in r.getMessage() for r in caplog.records)
    private.restart(wipe=True)
    _assert_all_writes_lost(backend, token)


def test_restart_with_data_keeps_the_claim(private: LocalRedis, backend: RedisBackend) -> None:
    """kill -9 and restart from the append-only file: the claim and the
    records survive; the script cache does not (NOSCRIPT is retried).
    Redis writes the AOF buffer to the kernel before it replies, so a
    process kill (not a host crash) loses nothing we saw acknowledged."""
    token = _held(backend)
    private.kill()
    private.start()
    backend.renew(token, LEASE)
    backend.save_task(token, make_task("t", state=SUCCESS))
    assert backend.load_tasks("f")["t"].state == SUCCESS


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_unreachable_server_is_backend_unavailable_not_a_hang(
    private: LocalRedis, backend: RedisBackend, fault: str
) -> None:
    token = _held(backend)
    getattr(private, fault)()
    try:
        for call in (
            lambda: backend.find_runnable(10),
            lambda: backend.load_flow("f"),
            lambda: backend.claim("f", "r2", LEASE),
            lambda: backend.save_task(token, make_task("t")),
        ):
            started = time.monotonic()
            with pytest.raises(BackendUnavailable):
                call()
            # The deadline, plus at most one attempt's socket timeout.
            assert time.monotonic() - started < DEADLINE + FAST["socket_timeout"] + 1.5
    finally:
        private.resume() if fault == "pause" else private.start()
    backend.renew(token, LEASE)  # and it works again once the server is back


def test_opening_while_the_server_is_down_does_not_hang(private: LocalRedis) -> None:
    private.kill()
    started = time.monotonic()
    backend = _open(private)
    try:
        assert time.monotonic() - started < 3
        with pytest.raises(BackendUnavailable):
            backend.warnings()
    finally:
        backend.close()


# ------------------------------------------------------- corrupt records


def test_corrupt_task_field_names_key_and_field(private: LocalRedis, backend: RedisBackend) -> None:
    token = _held(backend)
    backend.create_flow(make_flow("healthy"))
    keys = FlowKeys.of("t", "f")
    with private.client() as client:
        client.hset(keys.tasks, "t", b"{\xff not json")
    with pytest.raises(CorruptRecord) as caught:
        backend.load_tasks("f")
    assert keys.tasks in str(caught.value) and "'t'" in str(caught.value)
    assert backend.find_runnable(10) == ["healthy"]  # other flows keep running
    other = backend.claim("healthy", "r1", LEASE)
    backend.save_task(other, make_task("x"))
    backend.save_task(token, make_task("t"))  # the owner can repair it


def test_wrong_key_type_is_a_corrupt_record(private: LocalRedis, backend: RedisBackend) -> None:
    backend.create_flow(make_flow("f"))
    keys = FlowKeys.of("t", "f")
    with private.client() as client:
        client.delete(keys.tasks)
        client.set(keys.tasks, "a string, not a hash")
    with pytest.raises(CorruptRecord, match="wrong Redis type"):
        backend.load_tasks("f")


# ------------------------------------------------------- stale index hints


def test_find_runnable_repairs_stale_hints(
    private: LocalRedis, backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Index updates lost between a script and its index write: a finished
    flow still listed, a live claim listed as free, a deleted flow left
    behind. None is offered; each is repaired."""
    monkeypatch.setattr(index_module, "_MISSING_GRACE", 0.0)
    index = IndexKeys.of("t")  # a standalone namespace keeps the classic layout
    for flow_id in ("done", "held", "free"):
        backend.create_flow(make_flow(flow_id))
    done = backend.claim("done", "r1", LEASE)
    backend.save_flow(done, make_flow("done", state=SUCCESS))
    backend.claim("held", "r1", LEASE)
    with private.client() as client:
        client.zadd(index.runnable, {"done": 1, "held": 2, "ghost": 3})
    assert backend.find_runnable(10) == ["free"]
    assert backend.find_runnable(10) == ["free"]  # the ghost goes after the grace
    with private.client() as client:
        assert client.zscore(index.runnable, "done") is None
        assert client.zscore(index.runnable, "ghost") is None
        assert (client.zscore(index.runnable, "held") or 0) > time.time() * 1000


def test_renewal_puts_back_a_lost_index_entry(private: LocalRedis, backend: RedisBackend) -> None:
    backend.create_flow(make_flow("f"))
    token = backend.claim("f", "r1", 0.5)
    with private.client() as client:
        client.zrem(IndexKeys.of("t").runnable, "f")
    backend.renew(token, 0.3)
    wait_until(lambda: backend.current_claim("f") is None, "the lease to run out")
    assert backend.find_runnable(10) == ["f"]


# ---------------------------------------------- lost replies: read back


class _LoseReplies:
    """Let the server run a command, then drop the reply like a reset
    connection would, ``times`` times for commands matching ``names``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, names: set[str], times: int = 1) -> None:
        self.left = times
        original = redis.Redis.execute_command

        def execute(client: Any, *args: Any, **options: Any) -> Any:
            reply = original(client, *args, **options)
            if self.left and str(args[0]).upper() in names:
                self.left -= 1
                raise redis.ConnectionError("connection reset after the command ran")
            return reply

        monkeypatch.setattr(redis.Redis, "execute_command", execute)


@pytest.mark.parametrize("op", ["release", "delete_flow"])
def test_release_and_delete_after_a_lost_reply_succeed(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch, op: str
) -> None:
    backend.create_flow(make_flow("f"))
    token = backend.claim("f", "r1", LEASE)
    _LoseReplies(monkeypatch, {"EVALSHA"})
    getattr(backend, op)(token)
    assert backend.current_claim("f") is None


def test_create_after_a_lost_reply_is_not_flow_exists(
    private: LocalRedis, backend: RedisBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The create pipeline runs on the server, then its replies are lost.
    original = redis.client.Pipeline.execute
    state = {"left": 1}

    def execute(pipe: Any, *args: Any, **kwargs: Any) -> Any:
        replies = original(pipe, *args, **kwargs)
        if state["left"]:
            state["left"] -= 1
            raise redis.ConnectionError("reply lost")
        return replies

    monkeypatch.setattr(redis.client.Pipeline, "execute", execute)
    backend.create_flow(make_flow("f"))
    assert backend.find_runnable(10) == ["f"]


# ------------------------------------------------------------ round trips


class _RoundTrips:
    """Counts writes to Redis sockets: one per command or pipeline."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def send(conn: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", send)

    def of(self, call: Callable[[], object]) -> int:
        before = self.count
        call()
        return self.count - before


def test_round_trips_per_operation(backend: RedisBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend.create_flow(make_flow("warm-up"))  # connection and scripts in place
    trips = _RoundTrips(monkeypatch)
    assert trips.of(lambda: backend.create_flow(make_flow("f"))) == 1
    token = backend.claim("f", "r1", LEASE)
    assert trips.of(lambda: backend.save_task(token, make_task("t", state=RUNNING))) == 1
    assert trips.of(lambda: backend.save_task(token, make_task("t", state=SUCCESS))) == 1
    assert trips.of(lambda: backend.save_flow(token, make_flow("f", state=RUNNING))) == 1
    assert trips.of(lambda: backend.load_tasks("f")) == 1
    assert trips.of(lambda: backend.save_flow(token, make_flow("f", state=SUCCESS))) == 2


# ------------------------------------------------------------------- misc


def test_records_are_plain_json_for_redis_cli(private: LocalRedis, backend: RedisBackend) -> None:
    token = _held(backend)
    keys = FlowKeys.of("t", "f")
    with private.client() as client:
        assert json.loads(client.get(keys.flow) or b"")["id"] == "f"
        assert json.loads(client.hget(keys.tasks, "t") or b"")["state"] == RUNNING
        claim = json.loads(client.get(keys.claim) or b"")
        assert (claim["claim_id"], claim["epoch"]) == (token.claim_id, token.epoch)
        # The claim lives as long as its replica's lease key (leases.py).
        assert claim["lease_key"].startswith("t:lease:{") and client.pttl(keys.claim) == -1
        assert 0 < client.pttl(claim["lease_key"]) <= LEASE * 1000


def test_wait_for_work_wakes_on_a_new_flow(private: LocalRedis, backend: RedisBackend) -> None:
    assert backend.wait_for_work(0.05) is False  # subscribes
    other = _open(private)
    try:
        other.create_flow(make_flow("f"))
    finally:
        other.close()
    assert backend.wait_for_work(5) is True


# ------------------------------------------------- wait_for_work (NOTIFY)


def test_notify_and_watch_are_declared(backend: RedisBackend) -> None:
    assert {Capability.NOTIFY, Capability.WATCH} <= backend.capabilities


def test_a_wait_ends_when_the_next_lease_seen_runs_out(private: LocalRedis, backend: RedisBackend) -> None:
    """A lease running out publishes nothing, so the wait itself ends at the
    end of the next lease the last poll saw: the orphan is found then, not
    a whole wait later."""
    backend.create_flow(make_flow("f"))
    other = _open(private)
    try:
        other.claim("f", "dying", 1.0)  # its owner never renews
        assert backend.find_runnable(10) == []  # the poll sees the lease ahead
        started = time.monotonic()
        assert backend.wait_for_work(30) is True
        waited = time.monotonic() - started
        assert waited < 15, f"waited {waited:.1f}s for a 1s lease"  # far below the 30s asked
        wait_until(lambda: backend.find_runnable(10) == ["f"], "the orphan to be offered")
    finally:
        other.close()


def test_wait_for_work_wakes_on_a_release(private: LocalRedis, backend: RedisBackend) -> None:
    backend.create_flow(make_flow("f"))
    other = _open(private)
    try:
        def claim_and_release(n: int) -> None:
            other.release(other.claim("f", "r2", LEASE))

        woken, took = woken_by(backend, claim_and_release, timeout=30)
    finally:
        other.close()
    assert woken and took < WAIT


def test_a_burst_of_submits_wakes_a_waiter_once_not_once_per_flow(
    private: LocalRedis, backend: RedisBackend
) -> None:
    other = _open(private)
    try:
        woken, _ = woken_by(backend, lambda n: other.create_flow(make_flow(f"first-{n}")), timeout=30)
        assert woken
        for n in range(50):
            other.create_flow(make_flow(f"burst-{n}"))
        wakes = 0
        while backend.wait_for_work(0.3):  # a message still in flight may wake it once more
            wakes += 1
            assert wakes <= 3, "one wake-up per buffered message"
        assert wakes >= 1
    finally:
        other.close()


def _flowbaton_clients(server: LocalRedis) -> list[dict[str, Any]]:
    with server.client() as client:
        return [c for c in client.client_list() if c.get("name") == "flowbaton"]


def test_wait_for_work_leaves_no_thread_or_connection_behind(private: LocalRedis) -> None:
    threads = threading.active_count()
    backend, other = _open(private), _open(private)
    try:
        woken, _ = woken_by(backend, lambda n: other.create_flow(make_flow(f"f{n}")), timeout=30)
        assert woken
        assert any(c.get("sub") == "1" for c in _flowbaton_clients(private))  # one subscription
        answers: list[bool] = []
        waiting = threading.Thread(target=lambda: answers.append(backend.wait_for_work(30)))
        waiting.start()
        started = time.monotonic()
        backend.close()  # from another thread than the waiting one
        waiting.join(timeout=WAIT)
        assert answers == [False] and time.monotonic() - started < 2
        started = time.monotonic()
        assert backend.wait_for_work(5) is False and time.monotonic() - started < 1  # no new subscription
    finally:
        backend.close()
        other.close()
    wait_until(lambda: _flowbaton_clients(private) == [], "every flowbaton connection to close")
    assert threading.active_count() == threads


def test_wait_for_work_rides_out_a_restart(private: LocalRedis, backend: RedisBackend) -> None:
    """The subscription breaks with the server; a wait during the outage is
    a plain timeout, and the next one after it subscribes again."""
    assert backend.wait_for_work(0.05) is False  # subscribes
    private.kill()
    started = time.monotonic()
    assert backend.wait_for_work(0.5) is False
    assert time.monotonic() - started < WAIT
    private.start()
    other = _open(private)
    try:
        woken, took = woken_by(backend, lambda n: other.create_flow(make_flow(f"f{n}")), timeout=30)
    finally:
        other.close()
    assert woken and took < WAIT


def test_wait_for_work_as_a_least_privilege_acl_user(make_redis_server: Callable[..., LocalRedis]) -> None:
    """The documented ACL rules (docs/security.md) allow the subscription."""
    from tests.security.test_redis_acl import least_privilege

    server = make_redis_server()
    with server.client() as admin:
        admin.execute_command("ACL", "SETUSER", "svc", *least_privilege("svc", "pw-svc-1234"))
    url = f"redis://svc:pw-svc-1234@{server.host}:{server.port}/0?prefix=svc"
    woken, took = woken_by_a_submit(url, **FAST)
    assert woken and took < WAIT


# ------------------------------------------------------------ batch calls


def _commands(server: LocalRedis) -> int:
    """Commands the server has processed (its own counter; the INFO call
    that reads it is counted too, and subtracted by the caller)."""
    client = server.client()
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def test_a_replicas_claims_are_renewed_in_one_round_of_few_commands(private: LocalRedis,
                                                                     backend: RedisBackend) -> None:
    """The heartbeat of a replica running 200 flows costs what it costs for
    one: one script call and one index pipeline, not a renewal per flow."""
    flows = [f"f{i}" for i in range(200)]
    for flow_id in flows:
        backend.create_flow(make_flow(flow_id))
    tokens = backend.claim_many(flows, "r1", LEASE)
    assert len(tokens) == 200
    # The first renewal checks every claim (announcements of claims taken
    # by force may have been missed before it subscribed); then it is one
    # PEXPIRE and two index commands, with nothing done inside scripts.
    assert backend.renew_claims(tokens, LEASE) == []
    before = _commands(private)
    assert backend.renew_claims(tokens, LEASE) == []
    used = _commands(private) - before - 1  # less the INFO that read "before"
    assert used <= 4, f"{used} commands to renew 200 claims"


def test_a_claim_taken_by_force_is_announced_to_its_holder(private: LocalRedis, backend: RedisBackend) -> None:
    """The holder hears of a forced claim at its next renewal, without
    reading every claim: the claim script announces it."""
    flows = ["f1", "f2"]
    for flow_id in flows:
        backend.create_flow(make_flow(flow_id))
    tokens = backend.claim_many(flows, "r1", LEASE)
    assert backend.renew_claims(tokens, LEASE) == []  # subscribed, every claim checked
    other = _open(private)
    try:
        other.claim("f2", "operator", LEASE, force=True)
        lost: list[Any] = []
        wait_until(lambda: lost.extend(backend.renew_claims(tokens, LEASE)) or lost, "the announcement")
        assert lost == [tokens[1]]
        assert backend.renew_claims(tokens[:1], LEASE) == []
    finally:
        other.close()


def test_a_replicas_claims_end_together_with_its_lease(private: LocalRedis, backend: RedisBackend) -> None:
    """Nobody renews: the lease key runs out and every claim naming it is
    free at once, for any replica, with a newer epoch."""
    flows = ["f1", "f2", "f3"]
    for flow_id in flows:
        backend.create_flow(make_flow(flow_id))
    old = backend.claim_many(flows, "dying", 0.3)
    other = _open(private)
    try:
        wait_until(lambda: sorted(other.find_runnable(10)) == flows, "the claims to lapse")
        new = other.claim_many(flows, "r2", LEASE)
        assert [t.epoch for t in new] == [t.epoch + 1 for t in old]
        assert backend.renew_claims(old, LEASE) == old  # the lapsed lease is not brought back
        with pytest.raises(ClaimLost):
            backend.save_task(old[0], make_task("t"))
    finally:
        other.close()


def test_claim_many_is_one_pipeline(private: LocalRedis, backend: RedisBackend) -> None:
    flows = [f"f{i}" for i in range(100)]
    for flow_id in flows:
        backend.create_flow(make_flow(flow_id))
    client = private.client()
    client.config_resetstat()
    assert [t.flow_id for t in backend.claim_many(flows, "r1", LEASE)] == flows
    stats = client.info("commandstats")
    client.close()
    assert stats["cmdstat_evalsha"]["calls"] == 100  # one claim script per flow, all in one pipeline
    assert stats["cmdstat_zadd"]["calls"] == 2  # the index: two commands for all of them
