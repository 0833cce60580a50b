"""Page cursors: opaque to callers, checked by the driver that made them.

A cursor is text an operator may pass back on the command line
(``flowbaton flows --after CURSOR``): untrusted input. Drivers whose
cursors are creation sequence numbers accept only a whole number, so a
cursor never reaches a query or a key as anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence

from .errors import BadCursor, CorruptRecord
from .records import FlowDetail

__all__ = ["check_cursor", "fill_page", "Entry", "Fetch"]

log = logging.getLogger("flowbaton.backends")

#: One index entry of a page: its cursor, the flow record (None: gone since
#: the index was read) and where it lives (for a CorruptRecord).
Entry = tuple[str, "bytes | str | None", str]
#: Up to n entries after a cursor, oldest first, and whether more follow.
Fetch = Callable[["str | None", int], tuple[Sequence[Entry], bool]]
#: Records read per request while a filtered page fills.
BATCH = 200

_MAX_DIGITS = 20


def check_cursor(after: str | None) -> str | None:
    """``after`` if it is a sequence cursor (digits only), None for none."""
    if after is None or after == "":
        return None
    if not (after.isascii() and after.isdigit() and len(after) <= _MAX_DIGITS):
        raise BadCursor(f"not a page cursor: {after[:40]!r} (use the one the previous page ended with)")
    return after


def fill_page(fetch: Fetch, states: Collection[str] | None, after: str | None, limit: int
              ) -> tuple[list[FlowDetail], str | None]:
    """A page of up to ``limit`` flows in ``states`` after ``after``, from an
    index read in batches by ``fetch``; and the cursor of the next page
    (None: no more). One rule for the drivers whose index is not a query
    (Redis, ZooKeeper): a corrupt record is skipped with a warning."""
    page: list[FlowDetail] = []
    cursor = after
    while True:
        wanted = limit - len(page)  # a state filter turns records away: read at least a batch then
        entries, more = fetch(cursor, wanted if states is None else max(wanted, BATCH))
        for position, (entry_cursor, raw, where) in enumerate(entries):
            cursor = entry_cursor
            if raw is None:
                continue
            try:
                flow = FlowDetail.from_json(raw, where)
            except CorruptRecord as err:
                log.warning("a page of flows skips %s", err)
                continue
            if states is None or flow.state in states:
                page.append(flow)
            if len(page) == limit:
                return page, cursor if more or position < len(entries) - 1 else None
        if not more:
            return page, None
