"""Times as operators type them (``10m``, ``2h``, ``1d12h``, or an ISO time),
and as the CLI and the web view show them (``when``, ``span``).

``--since T`` and ``--finished-before T`` accept either: a duration counts
back from now, an ISO time is taken as is (local time when it names no
zone). Anything else is a ``ValueError`` that says what is accepted: that
includes ``nan``, ``inf``, negative durations and durations over
``MAX_DURATION`` (a century), which no calendar arithmetic can use.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Any

__all__ = ["parse_duration", "parse_point", "age_of", "MAX_DURATION", "when", "span", "ago"]

MAX_DURATION = 100 * 366 * 86400.0

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_ACCEPTED = "a duration like 90s, 10m, 2h, 1d12h, 2w, or an ISO time like 2024-05-01T10:00"


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``1h30m``; a bare number is seconds)."""
    cleaned = text.strip().lower()
    try:
        value = float(cleaned)
    except ValueError:
        value = _sum_of_parts(cleaned, text)
    return _usable(value, text)


def _sum_of_parts(cleaned: str, text: str) -> float:
    parts = _PART.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"not a duration: {text!r} (expected {_ACCEPTED})")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def _usable(value: float, text: str) -> float:
    problem = ("not a finite duration" if not math.isfinite(value) else "a negative duration" if value < 0
               else "a duration over a century" if value > MAX_DURATION else None)
    if problem:
        raise ValueError(f"{problem}: {text!r} (expected {_ACCEPTED})")
    return value


def _parse_iso(text: str) -> float:
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):  # fromisoformat accepts "Z" only from Python 3.11
        cleaned = cleaned[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(cleaned).timestamp()
    except (ValueError, OverflowError, OSError):  # OverflowError/OSError: a year the platform cannot convert
        raise ValueError(f"not a time: {text!r} (expected {_ACCEPTED})") from None


def parse_point(text: str, now: float | None = None) -> float:
    """The wall-clock timestamp ``text`` names: now minus a duration, or an ISO time."""
    current = time.time() if now is None else now
    try:
        return current - parse_duration(text)
    except ValueError:
        return _parse_iso(text)


def age_of(text: str, now: float | None = None) -> float:
    """Seconds between the point ``text`` names and now (never negative)."""
    current = time.time() if now is None else now
    return max(0.0, current - parse_point(text, current))


# ------------------------------------------------------------------ showing
# Stored times are untrusted like the rest of a record: a value no calendar
# holds (text, a boolean, NaN, a year past 9999) is shown as written, never raised.


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def when(stamp: Any) -> str:
    """A wall-clock time (local), to the second; "-" for none."""
    value = _number(stamp)
    if value is None:
        return "-" if stamp is None else repr(stamp)
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
    except (OverflowError, OSError, ValueError):
        return repr(stamp)


def span(seconds: Any) -> str:
    """A duration for people: 4.2s, 12.0m, 3.5h, 2.0d; "-" for none."""
    value = _number(seconds)
    if value is None:
        return "-" if seconds is None else repr(seconds)
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.1f}s"


def ago(stamp: Any, now: float) -> str:
    """How long before ``now`` ``stamp`` was ("4.2s ago"); "-" for none or no time."""
    value = _number(stamp)
    return "-" if value is None else f"{span(now - value)} ago"
