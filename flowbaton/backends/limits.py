"""How large one stored record may be: one option, one check, every driver.

Each driver takes ``max_record_bytes`` from its URL (``Option`` below) and
measures a record as the UTF-8 bytes of its JSON, the very bytes it stores.
A record over the limit is refused with ``ResultTooLarge`` *before* anything
is written, naming the record, its size and the limit.

Why each default:

- ZooKeeper: 1,000,000 bytes. The server drops the connection on a request
  larger than its ``jute.maxbuffer`` (1 MiB - 1 by default); the ~48 KB left
  is far more than a multi's fence checks, paths and ACLs take.
- Redis, SQLite, memory: 4 MiB. Nothing breaks above it, but a flow's
  records are read whole on every resume and listing; a bigger value is
  data that belongs in object storage, passed by reference.

A new flow record may take only half the limit (``check_new_flow``): the
other half is for what the engine adds to it while running (resume
history, the task list, a failure reason), so a flow accepted at submit can
always be written again. Batches of task records are split into requests of
at most the limit (``batches``) by drivers whose server caps a request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar

from .errors import BadBackendURL, DefinitionError, ResultTooLarge
from .options import Option
from .records import FlowDetail

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "ZOOKEEPER_MAX_RECORD_BYTES",
    "MIN_RECORD_BYTES",
    "FlowTooLarge",
    "option",
    "checked_limit",
    "sized",
    "fitting",
    "check_new_flow",
    "batches",
    "too_large",
]

DEFAULT_MAX_RECORD_BYTES = 4 * 1024 * 1024
ZOOKEEPER_MAX_RECORD_BYTES = 1_000_000
#: Below this not even an engine record without results fits.
MIN_RECORD_BYTES = 1024

T = TypeVar("T")


class FlowTooLarge(ResultTooLarge, DefinitionError):
    """A flow record (its arguments and inputs) is too large for the backend:
    refused at submit, declined by replicas. Fix the input."""


def option(default: int) -> Option:
    """The ``max_record_bytes`` entry of a driver's option table."""
    return Option(int, default, "largest record stored, in bytes (a result over it fails its task)")


def checked_limit(value: object) -> int:
    """The option's value, refused with a clear error when it cannot work."""
    if not isinstance(value, int) or isinstance(value, bool) or value < MIN_RECORD_BYTES:
        raise BadBackendURL(
            f"option 'max_record_bytes': {value!r} is not a whole number of at least {MIN_RECORD_BYTES}"
        )
    return value


def sized(raw: str, limit: int, what: str, hint: str = "") -> bytes:
    """UTF-8 bytes of a record, or ``ResultTooLarge`` when over ``limit``."""
    data = raw.encode("utf-8")
    if len(data) > limit:
        raise ResultTooLarge(too_large(what, len(data), limit, hint))
    return data


def fitting(raw: str, limit: int, what: str) -> str:
    """``raw`` itself, after ``sized`` checked it: for drivers that store text."""
    sized(raw, limit, what)
    return raw


def too_large(what: str, size: int, limit: int, hint: str = "") -> str:
    """The one wording of a size refusal."""
    return f"{what}: record is {size:,} bytes, over the limit of {limit:,} bytes (max_record_bytes{hint})"


def check_new_flow(flow: FlowDetail, limit: int) -> bytes:
    """UTF-8 bytes of a new flow record, or ``FlowTooLarge`` when the flow's
    own data (all but the engine's ``meta``) takes more than half the limit,
    the rest being kept for what a run adds, or the whole record is over it."""
    data = flow.to_json().encode("utf-8")
    own = len(replace(flow, meta={}).to_json().encode("utf-8")) if flow.meta else len(data)
    if own > limit // 2:
        raise FlowTooLarge(
            f"flow {flow.id!r}: record is {own:,} bytes, over half the limit of {limit:,} bytes "
            "(max_record_bytes; the other half is kept for what running the flow adds to its record). "
            "Pass large data by reference (a path, a URL, a key), or raise max_record_bytes"
        )
    if len(data) > limit:
        raise FlowTooLarge(too_large(f"flow {flow.id!r}", len(data), limit)
                           + f"; the engine's metadata (its task list) takes {len(data) - own:,} of them")
    return data


def batches(items: Sequence[T], sizes: Sequence[int], limit: int) -> list[list[T]]:
    """``items`` in order, cut into runs whose ``sizes`` add up to at most
    ``limit``; an item as large as the limit travels alone."""
    runs: list[list[T]] = []
    total = limit + 1  # start a new run at the first item
    for item, size in zip(items, sizes, strict=True):
        if total + size > limit:
            runs.append([])
            total = 0
        runs[-1].append(item)
        total += size
    return runs
