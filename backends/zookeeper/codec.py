"""Bytes in and out of znodes: the claim record, and the size cap."""

from __future__ import annotations

import json
import time

from ..errors import CorruptRecord, ResultTooLarge
from ..records import ClaimInfo, dumps

__all__ = ["claim_record", "parse_claim", "claim_holder", "sized"]


def claim_record(claim_id: str, epoch: int, owner: str) -> bytes:
    record = {"claim_id": claim_id, "epoch": epoch, "owner": owner, "claimed_at": time.time()}
    return dumps(record).encode()


def parse_claim(flow_id: str, data: bytes, where: str) -> ClaimInfo:
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptRecord(where, f"claim is not JSON ({err})") from err
    if not isinstance(record, dict):
        raise CorruptRecord(where, "claim is not a JSON object")
    claim_id, epoch, owner = record.get("claim_id"), record.get("epoch"), record.get("owner")
    claimed_at = record.get("claimed_at")
    if not (isinstance(claim_id, str) and isinstance(epoch, int) and isinstance(owner, str)):
        raise CorruptRecord(where, "claim lacks claim_id, epoch or owner")
    if not isinstance(claimed_at, (int, float)):
        raise CorruptRecord(where, "claim lacks claimed_at")
    return ClaimInfo(flow_id, owner, claim_id, epoch, float(claimed_at), None)


def claim_holder(data: bytes) -> str | None:
    """The claim id a claim znode names, or None if it cannot be read."""
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    holder = record.get("claim_id") if isinstance(record, dict) else None
    return holder if isinstance(holder, str) else None


def sized(raw: str, limit: int, what: str) -> bytes:
    """UTF-8 bytes of a record, or ResultTooLarge *before* anything is written.

    ZooKeeper refuses a request larger than its ``jute.maxbuffer`` (about
    1 MiB by default) and drops the connection doing so; we refuse first,
    with the record's name and the limit, at ``max_record_bytes``.
    """
    data = raw.encode("utf-8")
    if len(data) > limit:
        raise ResultTooLarge(
            f"{what}: record is {len(data):,} bytes, over the ZooKeeper limit of "
            f"{limit:,} bytes per znode (max_record_bytes; server jute.maxbuffer)"
        )
    return data
