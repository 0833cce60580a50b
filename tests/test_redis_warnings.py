"""Redis driver: warnings about server settings that can lose claims."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from flowbaton.backends import open_backend
from tests.servers.redis import LocalRedis

pytestmark = pytest.mark.redis


def _warnings_of(url: str) -> list[str]:
    backend = open_backend(url, retry_deadline=2.0)
    try:
        return backend.warnings()
    finally:
        backend.close()


def test_a_safe_server_gives_no_warning(redis_server: Any) -> None:
    assert _warnings_of(redis_server.url(namespace="w")) == []


def test_eviction_policy_is_warned_and_logged(
    make_redis_server: Callable[..., LocalRedis], caplog: pytest.LogCaptureFixture
) -> None:
    server = make_redis_server({"maxmemory-policy": "allkeys-lru"})
    with caplog.at_level(logging.WARNING, logger="flowbaton"):
        found = _warnings_of(server.url())
    assert len(found) == 1 and "maxmemory-policy is allkeys-lru" in found[0]
    assert any("allkeys-lru" in r.getMessage() for r in caplog.records)


def test_persistence_off_is_warned(make_redis_server: Callable[..., LocalRedis]) -> None:
    server = make_redis_server({"appendonly": "no", "save": '""'})
    found = _warnings_of(server.url())
    assert len(found) == 1 and "persistence is off" in found[0]


def test_snapshots_alone_count_as_persistence(make_redis_server: Callable[..., LocalRedis]) -> None:
    server = make_redis_server({"appendonly": "no", "save": "3600 1"})
    assert _warnings_of(server.url()) == []


def test_a_replica_endpoint_is_warned(make_redis_server: Callable[..., LocalRedis]) -> None:
    primary = make_redis_server()
    replica = make_redis_server({"replicaof": f"127.0.0.1 {primary.port}"})
    found = _warnings_of(replica.url())
    assert any("connected to a replica" in w for w in found), found


def test_config_refused_is_said(make_redis_server: Callable[..., LocalRedis]) -> None:
    """Managed services often deny CONFIG: say we could not check."""
    server = make_redis_server()
    with server.client() as client:
        client.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "&*", "+@all", "-config")
    url = server.url().replace("redis://", "redis://app:pw@")
    found = _warnings_of(url)
    assert len(found) == 1 and "CONFIG GET refused" in found[0]


def test_the_cli_leaves_setting_warnings_to_check_and_replicas(
    make_redis_server: Callable[..., LocalRedis], capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator command does not repeat "persistence is off" after every
    call; ``check`` reports it (exit 1) and ``replicas`` lists it."""
    from flowbaton.cli.main import main

    server = make_redis_server({"appendonly": "no", "save": '""'})
    assert main(["--backend", server.url(), "flows"]) == 0
    assert "persistence" not in capsys.readouterr().err
    assert main(["--backend", server.url(), "check"]) == 1
    assert "persistence is off" in capsys.readouterr().out
    assert main(["--backend", server.url(), "replicas"]) == 0
    assert "persistence is off" in capsys.readouterr().out
