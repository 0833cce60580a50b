"""Redis driver: every Lua script answers in the one shape, {status, ...},
and ``scripts.decode_reply`` is the one place that reads it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flowbaton.backends.errors import BackendUnavailable
from flowbaton.backends.redis.client import Connection
from flowbaton.backends.redis.keys import FlowKeys, GlobalKeys, IndexKeys
from flowbaton.backends.redis.scripts import SCRIPTS, Reply, Status, decode_reply, load_all, run_script
from flowbaton.backends.redis.url import parse_url


def test_a_reply_is_a_status_and_named_fields() -> None:
    assert decode_reply("claim", [b"held", b"{}", 5]) == Reply(Status.HELD, (b"{}", 5))
    assert decode_reply("save_flow", [b"ok"]).ok
    assert not decode_reply("save_flow", [b"not_current"]).ok


@pytest.mark.parametrize("raw", [1, 0, None, [], [1, 2], [b"maybe"], b"ok"])
def test_another_shape_is_refused_naming_the_script(raw: Any) -> None:
    with pytest.raises(BackendUnavailable, match="'probe'"):
        decode_reply("probe", raw)


def test_every_script_header_names_its_reply() -> None:
    for script in SCRIPTS.values():
        assert "-- Returns {" in script.text, script.name
        assert "local OK = 'ok'" in script.text, f"{script.name} lacks the prelude's status names"


@pytest.fixture
def client(redis_server: Any) -> Iterator[Any]:
    conn = Connection(parse_url(redis_server.url()))
    try:
        load_all(conn.redis)
        yield conn.redis
    finally:
        conn.close()


def _calls(prefix: str) -> dict[str, tuple[list[str], list[Any], Status]]:
    """Each script with keys of a flow that does not exist: what it answers."""
    flow, index, glob = FlowKeys.of(prefix, "nobody"), IndexKeys.of(prefix), GlobalKeys.of(prefix)
    token = ["r#1", 1]
    return {
        "claim": ([flow.flow, flow.claim, flow.epoch], ["r#1", 1000, "0", "0", "lease", "lost"], Status.NO_FLOW),
        "renew": ([flow.claim, flow.flow], [*token, 1000], Status.NOT_CURRENT),
        "release": ([flow.claim, flow.flow], token, Status.NOT_CURRENT),
        "save_tasks": ([flow.claim, flow.tasks], [*token, "t", "{}"], Status.NOT_CURRENT),
        "save_flow": ([flow.claim, flow.flow], [*token, "{}"], Status.NOT_CURRENT),
        "delete_flow": ([flow.claim, flow.flow, flow.tasks, flow.epoch, flow.declines], token, Status.NOT_CURRENT),
        "record_decline": ([flow.flow, flow.declines], ["r", "{}"], Status.NO_FLOW),
        "probe": ([flow.flow, flow.claim], [], Status.OK),
        "mailbox_put": ([f"{prefix}:mailbox:{{nobody}}"], ["f", "{}", 0], Status.FULL),
        "index_free": ([index.runnable, index.created, index.seq], ["nobody", "none"], Status.OK),
        "candidates": ([index.runnable, index.created], [0, 10, 100_000_000_000], Status.OK),
        "reindex": ([index.runnable], [], Status.OK),
        "replicas": ([glob.replicas, glob.replica_expiry], [0], Status.OK),
        "publish": ([glob.signal], ["nobody"], Status.OK),
    }


@pytest.mark.redis
def test_every_script_answers_with_a_status(client: Any) -> None:
    calls = _calls(f"s{uuid.uuid4().hex[:8]}")  # keys no other test uses
    assert set(calls) == set(SCRIPTS)
    for name, (keys, args, status) in calls.items():
        assert run_script(client, name, keys, args).status is status, name
