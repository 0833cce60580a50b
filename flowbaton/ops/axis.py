"""Time axes for timelines: ticks at steps people count in, and short labels.

Shared by the terminal drawing (``cli.timeline``) and the SVG
(``ops.timeline_svg``), so both mark the same moments the same way.
"""

from __future__ import annotations

import math

__all__ = ["axis", "span_label"]

_SUB_MINUTE = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)
_MINUTES_UP = (60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0)


def axis(span: float, most: int = 10) -> list[tuple[float, str]]:
    """Ticks of a time axis ``span`` seconds long: at most ``most`` + 1
    ``(seconds, label)`` from 0, at a step people count in (1, 2, 5 times a
    power of ten under a minute; 1, 2, 5, 10, 15, 30 minutes; hours; days)."""
    if not (math.isfinite(span) and span > 0):
        return [(0.0, "0s")]
    step = _step(span, max(most, 1))
    count = math.floor(span / step + 1e-9)  # 1.0 // 0.2 is 4.0: the last tick must not fall to rounding
    return [(i * step, span_label(i * step, step)) for i in range(count + 1)]


def _step(span: float, most: int) -> float:
    for step in (*_SUB_MINUTE, *_MINUTES_UP):
        if span / step <= most:
            return step
    step = 86400.0
    while span / step > most:
        step *= 10
    return step


def span_label(seconds: float, step: float = 1.0) -> str:
    """``seconds`` as ``2.5s``, ``90s`` as ``1m30s``, ``1h15m``, ``2d``:
    as many decimals as ``step`` needs under a minute, whole units above."""
    if seconds < 60:
        decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
        return f"{seconds:.{decimals}f}s"
    whole, parts = round(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts[:2])
