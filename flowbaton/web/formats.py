"""Values as the pages show them: times, spans, JSON cells, visible controls.

Template filters (``render`` registers them). They return plain text, never
markup: Jinja2 escapes what they return like any other value. Stored numbers
are untrusted too: a stamp no calendar holds is shown as written, not raised.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

__all__ = ["when", "ago", "span", "short", "visible"]

# C0 controls but tab and newline (tracebacks keep their lines), DEL, C1, the
# bidi overrides and lone surrogates: shown as escapes, so a stored name
# cannot reorder the text around it (U+202E) or break the page's encoding.
_UNSEEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def visible(text: str) -> str:
    """``text`` with every character that would act instead of show escaped."""
    return _UNSEEN.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def when(stamp: Any) -> str:
    """A wall-clock time (local), to the second."""
    value = _number(stamp)
    if value is None:
        return "-" if stamp is None else repr(stamp)
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    except (OverflowError, OSError, ValueError):
        return repr(stamp)


def span(seconds: Any) -> str:
    """A duration for people: 4.2s, 12.0m, 3.5h, 2.0d."""
    value = _number(seconds)
    if value is None:
        return "-" if seconds is None else repr(seconds)
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.1f}s"


def ago(stamp: Any, now: float) -> str:
    value = _number(stamp)
    return "-" if value is None else f"{span(now - value)} ago"


def short(value: Any, width: int = 80) -> str:
    """One cell: text as it is, anything else as JSON, cut to ``width``."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"
