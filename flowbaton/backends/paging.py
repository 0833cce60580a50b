"""Page cursors: opaque to callers, checked by the driver that made them.

A cursor is text an operator may pass back on the command line
(``flowbaton flows --after CURSOR``): untrusted input. Drivers whose
cursors are creation sequence numbers accept only a whole number, so a
cursor never reaches a query or a key as anything else.
"""

from __future__ import annotations

from .errors import BadCursor

__all__ = ["check_cursor"]

_MAX_DIGITS = 20


def check_cursor(after: str | None) -> str | None:
    """``after`` if it is a sequence cursor (digits only), None for none."""
    if after is None or after == "":
        return None
    if not (after.isascii() and after.isdigit() and len(after) <= _MAX_DIGITS):
        raise BadCursor(f"not a page cursor: {after[:40]!r} (use the one the previous page ended with)")
    return after
