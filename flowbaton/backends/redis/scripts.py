"""The Lua scripts (package data ``*.lua``), called by SHA.

redis-py's ``Script`` object reloads on NOSCRIPT for single calls, but inside
a pipeline it sends ``SCRIPT EXISTS`` before every execute: one more round
trip per fenced write. So the SHAs are kept here, pipelines carry plain
``EVALSHA``, and when the server answers NOSCRIPT (restart, failover,
``SCRIPT FLUSH``) the retry loop loads every script and runs the call again.
Every script is safe to run twice (see each header), so that is harmless.

Every script starts with ``_prelude.lua`` (shared helpers) and answers in
one shape, a table ``{status, ...}``: the status is a name (``Status``:
``ok``, ``not_current``, ``held``, ``no_flow``, ``full``), the fields after it are
named in the script's header. ``run_script`` runs a script and
``decode_reply`` decodes a queued one's answer into a ``Reply``: the one
place that knows the shape.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeAlias

from redis.cluster import RedisCluster

from ..errors import BackendUnavailable
from ._types import Client, Pipe

__all__ = ["Reply", "Script", "SCRIPTS", "Status", "decode_reply", "evalsha", "load_all", "run_script"]

Target: TypeAlias = "Client | Pipe"
Arg: TypeAlias = "str | bytes | int | float"

_NAMES = (
    "claim",
    "renew",
    "release",
    "save_tasks",
    "save_flow",
    "delete_flow",
    "record_decline",
    "probe",
    "index_free",
    "candidates",
    "reindex",
    "replicas",
    "mailbox_put",
    "publish",
)


@dataclass(frozen=True)
class Script:
    name: str
    text: str
    sha: str


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")


def _build(name: str) -> Script:
    text = _read("_prelude") + "\n" + _read(name)
    return Script(name, text, hashlib.sha1(text.encode("utf-8")).hexdigest())


SCRIPTS: dict[str, Script] = {name: _build(name) for name in _NAMES}


class Status(str, enum.Enum):
    """The first element of every script's reply (names from _prelude.lua)."""

    OK = "ok"
    NOT_CURRENT = "not_current"  # the claim token is not current: nothing changed
    HELD = "held"  # another live claim holds the flow: nothing changed
    NO_FLOW = "no_flow"  # there is no such flow: nothing changed
    FULL = "full"  # no room left for it: nothing changed


# The status as the server sends it -> Status: one lookup per reply, on the
# path of every fenced write.
_STATUSES = {status.value.encode("ascii"): status for status in Status}


@dataclass(frozen=True)
class Reply:
    """A script's answer: its status and the fields its header names."""

    status: Status
    fields: tuple[Any, ...]

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


def decode_reply(name: str, raw: Any) -> Reply:
    """Decode the answer of script ``name``. Another shape means the server
    ran something else than our script (a Redis-compatible server that
    converts replies its own way): refused, naming the script."""
    status = _STATUSES.get(raw[0]) if isinstance(raw, list) and raw and isinstance(raw[0], bytes) else None
    if status is not None:
        return Reply(status, tuple(raw[1:]))
    raise BackendUnavailable(f"Redis script {name!r} answered {raw!r:.200}, not {{status, ...}}")


def evalsha(target: Target, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """Run (or queue, on a pipeline) the named script by its SHA; the raw
    answer (or, on a pipeline, the pipeline): see ``decode_reply``."""
    return target.evalsha(SCRIPTS[name].sha, len(keys), *keys, *args)


def run_script(client: Client, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Reply:
    """Run the named script now and decode its answer."""
    return decode_reply(name, evalsha(client, name, keys, args))


def load_all(client: Client) -> None:
    """Load every script in one round trip (after NOSCRIPT, and at open).
    A cluster client sends each ``SCRIPT LOAD`` to every primary instead (a
    command without keys has no slot a pipeline could route it by)."""
    if isinstance(client, RedisCluster):
        for script in SCRIPTS.values():
            client.script_load(script.text)
        return
    pipe = client.pipeline(transaction=False)
    for script in SCRIPTS.values():
        pipe.script_load(script.text)
    pipe.execute()
