"""The least-privilege Redis ACL user docs/security.md recommends is enough
to run flows and pass ``check``, and it walls one namespace off from another.

A real redis-server with ACL users: one per service prefix, each limited to
its own keys and pub/sub channels and to the command groups flowbaton uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import redis

import flowbaton
from flowbaton.backends import open_backend
from flowbaton.backends.errors import FlowbatonError
from flowbaton.cli.main import main
from flowbaton.testing.servers.redis import LocalRedis

pytestmark = [pytest.mark.security, pytest.mark.redis]


def least_privilege(prefix: str, password: str) -> list[str]:
    """The ACL SETUSER rules of docs/security.md for one service's prefix."""
    return [
        "on", f">{password}", "resetkeys", f"~{prefix}:*", "resetchannels", f"&{prefix}:*",
        "-@all", "+@read", "+@write", "+@scripting", "+@pubsub", "+@transaction", "+@connection",
        "-@dangerous", "-scan", "+role", "+config|get",
    ]


@pytest.fixture
def acl_server(make_redis_server: Callable[..., LocalRedis]) -> LocalRedis:
    server = make_redis_server(config={"appendonly": "yes", "maxmemory-policy": "noeviction"})
    client = server.client()
    client.execute_command("ACL", "SETUSER", "svc_a", *least_privilege("svc_a", "pw-a-1234"))
    client.execute_command("ACL", "SETUSER", "svc_b", *least_privilege("svc_b", "pw-b-1234"))
    return server


def _url(server: LocalRedis, user: str, prefix: str) -> str:
    return f"redis://{user}:pw-{user[-1]}-1234@{server.host}:{server.port}/0?prefix={prefix}"


def test_a_least_privilege_user_runs_flows_and_passes_check(
    acl_server: LocalRedis, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = _url(acl_server, "svc_a", "svc_a")
    detail = flowbaton.run("tests.coord_flows:steps", kwargs={"n": 3}, inputs={"ledger": str(tmp_path / "ledger")},
                           backend=url, allow=["tests."])
    assert detail.state == "SUCCESS"
    assert main(["--backend", url, "check"]) == 0, capsys.readouterr()
    assert "OK" in capsys.readouterr().out


def test_one_services_user_cannot_read_or_write_anothers_keys(acl_server: LocalRedis, tmp_path: Path) -> None:
    flowbaton.run("tests.coord_flows:steps", kwargs={"n": 1}, inputs={"ledger": str(tmp_path / "ledger")},
                  backend=_url(acl_server, "svc_a", "svc_a"), allow=["tests."])
    intruder = redis.Redis(host=acl_server.host, port=acl_server.port, username="svc_b", password="pw-b-1234")
    seq = "svc_a:index:{svc_a}:seq"
    assert acl_server.client().exists(seq)
    for attempt in (lambda: intruder.get(seq), lambda: intruder.set(seq, "0"),
                    lambda: intruder.scan(match="svc_a:*")):  # SCAN would list any key name: refused too
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    # flowbaton under svc_b's user, pointed at svc_a's prefix, is refused cleanly
    with pytest.raises(FlowbatonError):
        open_backend(_url(acl_server, "svc_b", "svc_a")).list_flows()


def test_the_rules_in_the_docs_are_the_tested_ones() -> None:
    text = Path(__file__).parents[2].joinpath("docs", "security.md").read_text()
    assert " ".join(least_privilege("myservice", "PASSWORD")) in text
