"""Values as the pages show them: times, spans, JSON cells, visible controls.

Template filters (``render`` registers them; ``when``, ``span`` and ``ago`` are
the CLI's too, from ``ops.times``). They return plain text, never
markup: Jinja2 escapes what they return like any other value. Stored numbers
are untrusted too: a stamp no calendar holds is shown as written, not raised.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..ops.times import ago, span, when

__all__ = ["when", "ago", "span", "short", "visible"]

# C0 controls but tab and newline (tracebacks keep their lines), DEL, C1, the
# bidi overrides and lone surrogates: shown as escapes, so a stored name
# cannot reorder the text around it (U+202E) or break the page's encoding.
_UNSEEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def visible(text: str) -> str:
    """``text`` with every character that would act instead of show escaped."""
    return _UNSEEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def short(value: Any, width: int = 80) -> str:
    """One cell: text as it is, anything else as JSON, cut to ``width``."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"
