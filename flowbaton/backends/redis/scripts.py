"""The Lua scripts (package data ``*.lua``), called by SHA.

redis-py's ``Script`` object reloads on NOSCRIPT for single calls, but inside
a pipeline it sends ``SCRIPT EXISTS`` before every execute: one more round
trip per fenced write. So the SHAs are kept here, pipelines carry plain
``EVALSHA``, and when the server answers NOSCRIPT (restart, failover,
``SCRIPT FLUSH``) the retry loop loads every script and runs the call again.
Every script is safe to run twice (see each header), so that is harmless.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeAlias

from ._types import Client, Pipe

__all__ = ["Script", "SCRIPTS", "evalsha", "load_all"]

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
)
# Helpers in _prelude.lua; a script that calls one gets the prelude prepended.
_HELPERS = ("is_current(", "flow_state(", "readable_claim(")


@dataclass(frozen=True)
class Script:
    name: str
    text: str
    sha: str


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")


def _build(name: str) -> Script:
    text = _read(name)
    if any(helper in text for helper in _HELPERS):
        text = _read("_prelude") + "\n" + text
    return Script(name, text, hashlib.sha1(text.encode("utf-8")).hexdigest())


SCRIPTS: dict[str, Script] = {name: _build(name) for name in _NAMES}


def evalsha(target: Target, name: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """Run (or queue, on a pipeline) the named script by its SHA."""
    return target.evalsha(SCRIPTS[name].sha, len(keys), *keys, *args)


def load_all(client: Client) -> None:
    """Load every script in one round trip (after NOSCRIPT, and at open)."""
    pipe = client.pipeline(transaction=False)
    for script in SCRIPTS.values():
        pipe.script_load(script.text)
    pipe.execute()
