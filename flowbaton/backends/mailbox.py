"""A replica's mailbox of handover requests, as every driver stores it.

Each replica has one mailbox (``Backend.request_handover``): requests keyed
by the flow they are about, the drain request under ``DRAIN``. Drivers keep
the raw records; reading them back through ``read_mailbox`` is one rule for
all of them: a corrupt request, or one filed under another key or replica
than it names, is skipped with a warning. A record is untrusted input, and
a request that could move another replica's flows must never be honoured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from .errors import CorruptRecord, MailboxFull
from .records import Handover

__all__ = ["DRAIN", "mailbox_key", "read_mailbox", "check_room"]

log = logging.getLogger("flowbaton.backends")

#: The key of the drain request (no flow id is empty).
DRAIN = ""


def mailbox_key(flow_id: str | None) -> str:
    return DRAIN if flow_id is None else flow_id


def read_mailbox(replica_id: str, items: Iterable[tuple[str, str | bytes]],
                 where: Callable[[str], str]) -> list[Handover]:
    """The requests among ``items`` (key, raw record) that read back whole
    and are filed where they say; ``where(key)`` names a record's place."""
    found = []
    for key, raw in items:
        try:
            request = Handover.from_json(raw, where(key))
            if request.replica_id != replica_id or mailbox_key(request.flow_id) != key:
                raise CorruptRecord(where(key), "a request filed under another replica or flow than it names")
        except CorruptRecord as err:
            log.warning("skipping a handover request: %s", err)
            continue
        found.append(request)
    return found


def check_room(held: int, key_present: bool, limit: int, replica_id: str) -> None:
    """``MailboxFull`` when one more request would not fit (a replacement always does)."""
    if not key_present and held >= limit:
        raise MailboxFull(f"the mailbox of replica {replica_id!r} already holds {held} handover requests "
                          f"(at most {limit}); wait for it to act on them")
