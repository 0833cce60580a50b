"""Bytes in and out of znodes: the claim record, and the size cap."""

from __future__ import annotations

import time

from .. import limits
from ..errors import CorruptRecord
from ..records import ClaimInfo, dumps, load_json

__all__ = ["claim_record", "parse_claim", "claim_holder", "sized"]


def claim_record(claim_id: str, epoch: int, owner: str) -> bytes:
    record = {"claim_id": claim_id, "epoch": epoch, "owner": owner, "claimed_at": time.time()}
    return dumps(record).encode()


def parse_claim(flow_id: str, data: bytes, where: str) -> ClaimInfo:
    """The claim a claim znode holds, or ``CorruptRecord`` naming ``where``."""
    return ClaimInfo.from_json(data, where, flow_id=flow_id)


def claim_holder(data: bytes) -> str | None:
    """The claim id a claim znode names, or None if it cannot be read (an
    unreadable claim: a forced claim replaces it, nobody can renew it)."""
    try:
        record = load_json(data, "claim")
    except CorruptRecord:
        return None
    holder = record.get("claim_id") if isinstance(record, dict) else None
    return holder if isinstance(holder, str) else None


def sized(raw: str, limit: int, what: str) -> bytes:
    """UTF-8 bytes of a record, or ResultTooLarge *before* anything is written.

    ZooKeeper refuses a request larger than its ``jute.maxbuffer`` (about
    1 MiB by default) and drops the connection doing so; we refuse first,
    with the record's name and the limit, at ``max_record_bytes``.
    """
    return limits.sized(raw, limit, what, "; server jute.maxbuffer ~1 MiB per request")
