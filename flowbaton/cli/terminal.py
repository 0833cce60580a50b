"""Stored text made safe to print on an operator's terminal.

Names, failure messages, task ids and reasons come from the store, which
anyone with write access to the backend can fill. Printed raw, an escape
sequence in them can move the cursor, recolour or rewrite lines: a flow name
once drew a fake ``state SUCCESS`` line over a REVERTED flow. ``printable``
renders every character a terminal would act on as a visible escape, one
helper for every text output of the CLI. JSON output (``--json``) is not
passed through it: ``json.dumps`` already writes such characters as
``\\u001b`` escapes, and scripts need the exact values.

Escaped: C0 controls (``\\x00``-``\\x1f``: ESC, CR, LF, TAB, BEL...), DEL and
the C1 controls (``\\x7f``-``\\x9f``) as ``\\xNN``; the Unicode bidi controls
(U+061C, U+200E/F, U+202A-E, U+2066-9), the line and paragraph separators
(U+2028/9) and lone surrogates (which cannot even be encoded for output) as
``\\uNNNN``. A backslash is left as it is: the point is that nothing acts on
the terminal, not that the rendering can be parsed back (``--json`` is exact).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["printable", "printable_lines"]

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object) -> str:
    """``text`` (``str()`` of anything else) with control characters as escapes.

    Idempotent: the result holds no character it would escape again.
    """
    value = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_escaped, value)


def printable_lines(lines: Iterable[str]) -> str:
    """Single lines, each made printable, joined by newlines: a stored value
    inside one line can never start another."""
    return "\n".join(printable(line) for line in lines)
