"""``redis+cluster://`` and ``rediss+cluster://`` locked down: ACL users and TLS.

ACL users are per node in a Redis Cluster (neither gossiped nor
replicated), so a test user is created on every node, replicas included (a
promoted replica must know it), on the session's cluster, and deleted last.
The documented least-privilege rules (tests/security/test_redis_acl.py) need
one more on a cluster: ``cluster|slots``, which the client asks to learn the
slot map. TLS runs on a private cluster of three primaries that speak TLS
only (``tls_redis_cluster``), with a certificate from a throw-away CA.

Refusals are one clear line naming what and where, never a password (in the
message, the rendered traceback or any log record), and never a retry loop:
a wrong password or an untrusted certificate is refused again.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.exceptions as rex
from redis.backoff import NoBackoff
from redis.retry import Retry

import flowbaton
from flowbaton.backends import open_backend
from flowbaton.backends.errors import BackendUnavailable
from flowbaton.testing.servers.redis_cluster import LocalRedisCluster
from tests.contract.helpers import LEASE, make_flow, make_task, woken_by_a_submit
from tests.security.test_redis_acl import least_privilege
from tests.servers.redis import AnyRedisCluster

pytestmark = [pytest.mark.security, pytest.mark.redis]

# Small bounds: a refusal must come at once, and a mistake here must not hang.
QUICK = {"retry_deadline": 3, "socket_timeout": 1, "socket_connect_timeout": 1}
User = tuple[str, str]  # name, password
AddUser = Callable[..., User]


def cluster_rules(prefix: str, password: str) -> list[str]:
    """The least-privilege rules of docs/security.md, plus the slot map."""
    return [*least_privilege(prefix, password), "+cluster|slots"]


@pytest.fixture
def add_user(redis_cluster: AnyRedisCluster) -> Iterator[AddUser]:
    """``add_user(prefix, *rules)``: a new ACL user with a random name and
    password on every node, allowed ``prefix``'s keys and channels (then
    ``rules``); deleted after the test."""
    nodes = [*redis_cluster.primaries(), *redis_cluster.replicas()]
    clients = [redis.Redis(host=node.host, port=node.port, socket_timeout=5) for node in nodes]
    names: list[str] = []

    def add(prefix: str, *rules: str) -> User:
        name, password = f"fb_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}"
        names.append(name)
        for client in clients:
            client.execute_command("ACL", "SETUSER", name, "reset", *cluster_rules(prefix, password), *rules)
        return name, password

    try:
        yield add
    finally:
        for client in clients:
            if names:
                client.execute_command("ACL", "DELUSER", *names)
            client.close()


def as_user(cluster: AnyRedisCluster, user: User, prefix: str, **options: object) -> str:
    url = cluster.url(prefix, **QUICK, **options)
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user[0]}:{user[1]}@{rest}"


def refusal(url: str) -> BackendUnavailable:
    """What opening ``url`` and listing its flows ends in (opening may reach
    the cluster at once or leave it to the first call)."""
    with pytest.raises(BackendUnavailable) as caught, open_backend(url) as backend:
        backend.list_flows()
    return caught.value


def assert_clear(err: BaseException, *secrets: str) -> str:
    """One line, and no secret in it nor in the traceback a crash would print."""
    message = str(err)
    rendered = "".join(traceback.format_exception(err))
    assert "\n" not in message, message
    assert not [secret for secret in secrets if secret in rendered], rendered
    return message


# ------------------------------------------------------------------- ACL users


def test_a_least_privilege_user_runs_flows_on_a_cluster(
    redis_cluster: AnyRedisCluster, add_user: AddUser, tmp_path: Path
) -> None:
    prefix = f"acl{uuid.uuid4().hex[:8]}"
    url = as_user(redis_cluster, add_user(prefix), prefix)
    with open_backend(url) as backend:
        # Every check it runs is allowed: no "cannot read"/"cannot check" warning.
        assert not [w for w in backend.warnings() if "refused" in w], backend.warnings()
        backend.create_flow(make_flow("f"))
        token = backend.claim("f", "r1", LEASE)
        backend.save_task(token, make_task("t"))
        assert list(backend.load_tasks("f")) == ["t"]
        assert backend.find_runnable(10) == []  # claimed
        backend.release(token)
        assert [flow.id for flow in backend.list_flows()] == ["f"]
        assert backend.find_runnable(10) == ["f"]
    detail = flowbaton.run("tests.coord_flows:steps", kwargs={"n": 2}, inputs={"ledger": str(tmp_path / "ledger")},
                           backend=url, allow=["tests."])
    assert detail.state == "SUCCESS"


def test_without_config_get_and_role_the_check_warns_and_flows_still_run(
    redis_cluster: AnyRedisCluster, add_user: AddUser
) -> None:
    prefix = f"acl{uuid.uuid4().hex[:8]}"
    with open_backend(as_user(redis_cluster, add_user(prefix, "-config|get", "-role"), prefix)) as backend:
        refused = [w for w in backend.warnings() if "CONFIG GET refused" in w or "ROLE refused" in w]
        assert len(refused) == 2 * len(redis_cluster.primaries()), backend.warnings()  # both, on each primary
        backend.create_flow(make_flow("f"))
        backend.release(backend.claim("f", "r1", LEASE))
        assert backend.find_runnable(10) == ["f"]


def test_a_wrong_password_is_refused_in_one_line_without_it(
    redis_cluster: AnyRedisCluster, add_user: AddUser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    prefix = f"acl{uuid.uuid4().hex[:8]}"
    name, password = add_user(prefix)
    wrong = f"wrong-{uuid.uuid4().hex}"
    started = time.monotonic()
    err = refusal(as_user(redis_cluster, (name, wrong), prefix))
    assert time.monotonic() - started < QUICK["retry_deadline"]  # refused, not retried
    message = assert_clear(err, wrong, password)
    assert "refused" in message and "invalid username-password pair" in message
    assert f"redis+cluster://{redis_cluster.primaries()[0]}" in message  # where
    assert wrong not in caplog.text and password not in caplog.text


def test_a_user_denied_the_namespace_is_refused_clearly(redis_cluster: AnyRedisCluster, add_user: AddUser) -> None:
    mine = f"acl{uuid.uuid4().hex[:8]}"
    user = add_user(f"other{mine}")  # its keys are other...:*, not mine:*
    message = assert_clear(refusal(as_user(redis_cluster, user, mine)), user[1])
    assert "refused" in message and "no permissions" in message, message
    assert "redis+cluster://" in message and "layout" in message, message  # where, and what it was doing


# ------------------------------------------------------------------------- TLS


def test_rediss_cluster_with_the_ca(tls_redis_cluster: LocalRedisCluster) -> None:
    url = tls_redis_cluster.url(f"tls{uuid.uuid4().hex[:8]}", **QUICK)
    assert url.startswith("rediss+cluster://") and "ssl_ca_certs=" in url
    with open_backend(url) as backend:
        backend.create_flow(make_flow("f"))
        token = backend.claim("f", "r1", LEASE)
        backend.save_task(token, make_task("t"))
        backend.release(token)
        assert [flow.id for flow in backend.list_flows()] == ["f"]
        assert backend.find_runnable(10) == ["f"]
        assert list(backend.load_tasks("f")) == ["t"]
    woken, _ = woken_by_a_submit(url)  # the subscription is TLS too
    assert woken
    # So it all went over TLS: nothing answers in plain text.
    for node in tls_redis_cluster.primaries():
        plain = redis.Redis(host=node.host, port=node.port, socket_timeout=1, retry=Retry(NoBackoff(), 0))
        with plain, pytest.raises(rex.ConnectionError):
            plain.ping()


def test_rediss_cluster_without_the_ca_is_refused_clearly(tls_redis_cluster: LocalRedisCluster) -> None:
    url = tls_redis_cluster.url("tls", **{**QUICK, "ssl_ca_certs": ""})  # default trust: not our CA
    started = time.monotonic()
    message = assert_clear(refusal(url))
    assert time.monotonic() - started < QUICK["retry_deadline"]  # refused, not retried
    assert "TLS certificate refused" in message and "ssl_ca_certs" in message, message
    assert "rediss+cluster://" in message, message
