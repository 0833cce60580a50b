"""A flow's timeline as one standalone SVG document (``show --svg FILE``).

Standalone so it can be attached to an incident ticket, opened in any
browser, or inlined in an HTML page (the web view): no script, no external
font or stylesheet, its ``<style>`` scoped under the root's class
``fb-timeline`` so inlined it restyles nothing else on the page. Browsers
show each ``<title>`` as a tooltip: the times, replica, epoch, outcome and
error of an attempt.

The drawing carries machine-readable hooks for tests and the web view:
``g.attempt`` (``data-task``, ``data-attempt``, ``data-kind``,
``data-replica``, ``data-outcome``), ``g.claim`` (``data-replica``,
``data-epoch``, ``data-ended``), ``g.takeover`` (``data-from``, ``data-to``,
``data-epoch``), ``g.replica`` in the legend (``data-replica``); an absent
value is the empty string.

Every string comes from the store: each is made visible (control, bidi and
XML-forbidden characters as ``\\xNN``/``\\uNNNN`` escapes, like the CLI's
``terminal.printable``) and then escaped, so a task id ``<script>`` is text
and the document always parses. The output is a function of the timeline
alone (no clock, no randomness): same timeline, same bytes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from .axis import axis, span_label
from .timeline import Attempt, ClaimSpan, Takeover, TaskLine, Timeline

__all__ = ["to_svg", "STYLESHEET", "PALETTE", "MAX_ROWS", "MAX_LEGEND"]

#: Fill colours by replica, in order of first appearance, cycling (Tableau 10).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac")
NO_REPLICA = "#d0d0d0"
#: Task rows drawn; past that a line says how many were left out.
MAX_ROWS = 200
#: Replicas named in the legend (their colours repeat anyway past ``PALETTE``).
MAX_LEGEND = 40

_PAD, _LABEL_W, _RIGHT, _ROW, _BAR = 10.0, 150.0, 28.0, 22.0, 14.0
_LABEL_CHARS = 22
_LIFTS = 3  # lines the takeover labels take turns on, so that neighbours do not overwrite each other
_FAILED = frozenset({"failure", "retry", "revert failure", "cancelled"})
_HATCH = "fb-timeline-hatch"
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")

STYLESHEET = """
.fb-timeline{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:11px}
.fb-timeline text{fill:#222}
.fb-timeline .heading{font-size:13px;font-weight:600}
.fb-timeline .label{font-family:ui-monospace,Menlo,Consolas,monospace}
.fb-timeline .row-bg{fill:#f5f5f5}
.fb-timeline .bar{stroke:#333;stroke-width:.5}
.fb-timeline .attempt.failed .bar{stroke:#b00020;stroke-width:1.5}
.fb-timeline .attempt.in-doubt .bar{stroke:#b00020;stroke-width:1.5;stroke-dasharray:4 2}
.fb-timeline .attempt.revert .bar{fill-opacity:.55}
.fb-timeline .doubt{fill:#b00020;font-size:12px;font-weight:700;paint-order:stroke;stroke:#fff;stroke-width:3px}
.fb-timeline .claim .bar{fill-opacity:.45}
.fb-timeline .stood-still{fill:#d62728;fill-opacity:.15;pointer-events:none}
.fb-timeline .handover{stroke:#d62728;stroke-width:1.5;stroke-dasharray:5 3;pointer-events:none}
.fb-timeline .takeover text{fill:#b00020}
.fb-timeline .axis line{stroke:#666}
.fb-timeline .axis text,.fb-timeline .note{fill:#555}
"""


def to_svg(t: Timeline, *, width: int = 900, embed_style: bool = True) -> str:
    """The timeline ``t`` as an SVG document ``width`` pixels wide (at least
    400). ``embed_style=False`` leaves the ``<style>`` out, for a page that
    serves ``STYLESHEET`` as a file (a Content-Security-Policy without
    inline styles refuses the element)."""
    frame = _Frame.of(t, max(width, 400))
    claims = _lane('<g class="lane">', "claims", frame.claims_y, [_claim(c, frame) for c in t.claims])
    parts = [_heading(t, frame.width), claims]
    parts += [_row(i, line, frame) for i, line in enumerate(t.tasks[:MAX_ROWS])]
    parts += [_takeover(i, k, frame) for i, k in enumerate(t.takeovers)]
    parts += [_axis(frame), _legend(frame)]
    height = _n(frame.height)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="fb-timeline" width="{frame.width}" height="{height}" '
            f'viewBox="0 0 {frame.width} {height}" role="img" data-flow={_attr(t.flow_id)}>')
    title = f"<title>{_text(f'timeline of flow {t.flow_id} ({t.name}), {t.state}')}</title>"
    style = [f"<style>{STYLESHEET}</style>"] if embed_style else []
    return "\n".join([head, title, *style, _DEFS, *parts, "</svg>"]) + "\n"


_DEFS = (f'<defs><pattern id="{_HATCH}" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><rect width="3" height="6" fill="#fff" fill-opacity=".5"/></pattern></defs>')


@dataclass(frozen=True)
class _Frame:
    """Where things go: the time scale, the rows, the legend's entries
    (replica, x, line: they wrap at the width)."""

    t: Timeline
    width: int
    colours: dict[str, str]
    claims_y: float
    rows: int
    legend: list[tuple[str, float, int]]
    key: list[str]

    @classmethod
    def of(cls, t: Timeline, width: int) -> _Frame:
        colours = {r: PALETTE[i % len(PALETTE)] for i, r in enumerate(t.replicas)}
        claims_y = 30.0 + (12.0 * _LIFTS + 4 if t.takeovers else 0.0)  # room for the takeover labels
        legend = _legend_places(t.replicas, width)
        return cls(t, width, colours, claims_y, min(len(t.tasks), MAX_ROWS), legend,
                   _key_lines(width, len(t.replicas) - len(legend)))

    def x(self, at: float) -> float:
        left, right = _PAD + _LABEL_W, self.width - _RIGHT
        if self.t.span <= 0:
            return left
        return left + (min(max(at, self.t.start), self.t.end) - self.t.start) / self.t.span * (right - left)

    def row_y(self, row: int) -> float:
        return self.claims_y + _ROW + 4 + row * _ROW

    def colour(self, replica: str | None) -> str:
        return self.colours.get(replica, NO_REPLICA) if replica is not None else NO_REPLICA

    @property
    def bottom(self) -> float:
        """Below the last row (and the note about rows left out)."""
        return self.row_y(self.rows) + (18.0 if len(self.t.tasks) > self.rows else 0.0)

    @property
    def legend_y(self) -> float:
        return self.bottom + 42

    @property
    def key_y(self) -> float:
        """The line under the legend's replicas that says what the marks mean."""
        return self.legend_y + 18 * (self.legend[-1][2] + 1 if self.legend else 0)

    @property
    def height(self) -> float:
        return self.key_y + 16 * (len(self.key) - 1) + 10


def _legend_places(replicas: Sequence[str], width: int) -> list[tuple[str, float, int]]:
    places, x, line = [], _PAD, 0
    for replica in replicas[:MAX_LEGEND]:
        size = 40.0 + 6.5 * len(_cut(replica, 40))
        if x + size > width - _PAD and x > _PAD:
            x, line = _PAD, line + 1
        places.append((replica, x, line))
        x += size
    return places


_KEY = ("hatched: no end recorded (still running, or in doubt)", "dashed red outline and ?: in doubt, its owner's "
        "claim ended while it ran", "red outline: failed", "dashed red line: takeover", "shaded: the flow stood still")


def _key_lines(width: int, more: int) -> list[str]:
    """What the marks mean, wrapped to the width (about 6 pixels a character)."""
    lines, chars = [""], max(40, int((width - 2 * _PAD) / 6))
    for item in [*_KEY, *([f"{more} more replicas not listed"] if more > 0 else [])]:
        joined = f"{lines[-1]} · {item}" if lines[-1] else item
        if len(joined) <= chars or not lines[-1]:
            lines[-1] = joined
        else:
            lines.append(item)
    return lines


def _heading(t: Timeline, width: int) -> str:
    text = f"flow {t.flow_id} · {_cut(t.name, 60)} · {t.state} · {span_label(t.span, 0.1)} from {_utc(t.start)}"
    return f'<text class="heading" x="{_n(_PAD)}" y="18">{_text(_cut(text, int(width / 9)))}</text>'


def _lane(opening: str, label: str, y: float, items: Sequence[str], background: str = "") -> str:
    """A labelled row: ``opening`` (its ``<g>`` tag), ``background``, the
    label (cut, with the full text as its tooltip), then ``items``."""
    full = f"<title>{_text(label)}</title>" if len(label) > _LABEL_CHARS else ""
    text = f'<text class="label" x="{_n(_PAD)}" y="{_n(y + _BAR - 2)}">{_text(_cut(label, _LABEL_CHARS))}{full}</text>'
    return "\n".join([opening, *([background] if background else []), text, *items, "</g>"])


def _row(i: int, line: TaskLine, frame: _Frame) -> str:
    y = frame.row_y(i)
    shade = (f'<rect class="row-bg" x="{_n(_PAD)}" y="{_n(y - 4)}" width="{_n(frame.width - 2 * _PAD)}" '
             f'height="{_n(_ROW)}"/>') if i % 2 else ""
    bars = [_attempt(a, y, frame) for a in line.attempts]
    return _lane(f'<g class="task" data-task={_attr(line.task_id)}>', line.task_id, y, bars, shade)


def _bar(x0: float, x1: float, y: float, fill: str, hatched: bool) -> str:
    box = f'x="{_n(x0)}" y="{_n(y)}" width="{_n(max(x1 - x0, 2.0))}" height="{_n(_BAR)}"'
    hatch = f'<rect class="hatch" {box} fill="url(#{_HATCH})"/>' if hatched else ""
    return f'<rect class="bar" {box} fill="{fill}"/>{hatch}'


def _attempt(a: Attempt, y: float, frame: _Frame) -> str:
    marks = [a.kind, *(["open"] if a.open else []), *(["in-doubt"] if a.in_doubt else []),
             *(["failed"] if a.outcome in _FAILED else [])]
    start, end = frame.x(a.started_at), frame.x(a.until)
    # "?" inside the bar's open end: the task's next attempt starts right after it
    mark = end - 9 if end - start > 14 else end + 3
    doubt = f'<text class="doubt" x="{_n(mark)}" y="{_n(y + _BAR - 2)}">?</text>' if a.in_doubt else ""
    return (f'<g class="attempt {" ".join(marks)}" data-task={_attr(a.task_id)} data-attempt="{a.number}" '
            f"data-kind=\"{a.kind}\" data-replica={_attr(a.replica or '')} data-outcome={_attr(a.outcome)}>"
            f"<title>{_tip(_attempt_tip(a, frame.t))}</title>"
            f"{_bar(start, end, y, frame.colour(a.replica), a.open)}{doubt}</g>")


def _attempt_tip(a: Attempt, t: Timeline) -> list[str]:
    end = ("end unknown (in doubt)" if a.in_doubt else "still running") if a.open else (
        f"{_offset(a.until, t)} ({_secs(a.until - a.started_at)})")
    lines = [f"{a.task_id}: {a.kind} {a.number or '?'}, {a.outcome}", f"{_offset(a.started_at, t)} → {end}",
             f"started {_utc(a.started_at)}", f"replica {a.replica or '?'}, epoch {a.epoch or '?'}"]
    return lines + ([f"error: {a.error}"] if a.error else [])


def _claim(c: ClaimSpan, frame: _Frame) -> str:
    ended = "live, or its end was not recorded" if c.ended is None else f"ended {c.ended}" + (
        f" at {_offset(c.ended_at, frame.t)}" if c.ended_at is not None else "")
    tip = [f"claim of {c.owner}, epoch {c.epoch}", f"from {_offset(c.claimed_at, frame.t)} ({_utc(c.claimed_at)})",
           ended]
    return (f'<g class="claim" data-replica={_attr(c.owner)} data-epoch="{c.epoch}" data-ended={_attr(c.ended or "")}>'
            f"<title>{_tip(tip)}</title>"
            f"{_bar(frame.x(c.claimed_at), frame.x(c.until), frame.claims_y, frame.colour(c.owner), False)}</g>")


def _takeover(i: int, k: Takeover, frame: _Frame) -> str:
    """A dashed line at the new claim, its label above the chart (on one
    of ``_LIFTS`` lines in turn), and the time the flow stood still shaded."""
    x, top, bottom = frame.x(k.at), frame.claims_y - 4, frame.bottom
    lift = 12.0 * (i % _LIFTS)
    right_half = x > frame.width * 0.6
    shade = ""
    if k.stood_still:
        x0 = frame.x(k.at - k.stood_still)
        shade = (f'<rect class="stood-still" x="{_n(x0)}" y="{_n(top)}" width="{_n(x - x0)}" '
                 f'height="{_n(bottom - top)}"/>')
    anchor = ' text-anchor="end"' if right_half else ""
    text = f"takeover: {_cut(k.from_owner or '?', 24)} → {_cut(k.to_owner, 24)}"
    label = f'<text x="{_n(x - 3 if right_half else x + 3)}" y="{_n(top - 2 - lift)}"{anchor}>{_text(text)}</text>'
    return (f'<g class="takeover" data-from={_attr(k.from_owner or "")} data-to={_attr(k.to_owner)} '
            f'data-epoch="{k.epoch}"><title>{_text(_takeover_tip(k, frame.t))}</title>{shade}'
            f'<line class="handover" x1="{_n(x)}" y1="{_n(top - 12 - lift)}" x2="{_n(x)}" y2="{_n(bottom)}"/>'
            f"{label}</g>")


def _takeover_tip(k: Takeover, t: Timeline) -> str:
    still = f", stood still {_secs(k.stood_still)}" if k.stood_still is not None else ""
    return f"takeover at {_offset(k.at, t)}: {k.from_owner or '?'} → {k.to_owner} (epoch {k.epoch}){still}"


def _axis(frame: _Frame) -> str:
    """Ticks in seconds from the start, about one per 70 pixels; the start's UTC time at the left."""
    y, t = frame.bottom + 6, frame.t
    left, right = frame.x(t.start), frame.x(t.end)
    ticks = [_tick(frame.x(t.start + s), y, label) for s, label in axis(t.span, max(2, int((right - left) // 70)))]
    more = len(t.tasks) - frame.rows
    note = [f'<text class="note" x="{_n(_PAD)}" y="{_n(frame.bottom - 8)}">… {more} more tasks not drawn '
            "(show --timeline --json lists them all)</text>"] if more > 0 else []
    line = f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(max(right, left + 1))}" y2="{_n(y)}"/>'
    return "\n".join([*note, '<g class="axis">', line, *ticks, "</g>"])


def _tick(x: float, y: float, label: str) -> str:
    return (f'<line x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x)}" y2="{_n(y + 4)}"/>'
            f'<text x="{_n(x)}" y="{_n(y + 16)}" text-anchor="middle">{_text(label)}</text>')


def _legend(frame: _Frame) -> str:
    entries = [f'<g class="replica" data-replica={_attr(r)}><title>{_text(r)}</title>'
               f'<rect class="bar" x="{_n(x)}" y="{_n(frame.legend_y + 18 * line - 10)}" width="12" height="12" '
               f'fill="{frame.colour(r)}"/><text x="{_n(x + 16)}" y="{_n(frame.legend_y + 18 * line)}">'
               f"{_text(_cut(r, 40))}</text></g>" for r, x, line in frame.legend]
    key = [f'<text class="note" x="{_n(_PAD)}" y="{_n(frame.key_y + 16 * i)}">{_text(line)}</text>'
           for i, line in enumerate(frame.key)]
    return "\n".join(['<g class="legend">', *entries, *key, "</g>"])


# ----------------------------------------------------------------- text


def _visible(value: str) -> str:
    """Control, bidi and XML-forbidden characters as visible escapes."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else
                       f"\\u{ord(m.group()):04x}", value)


def _text(value: str) -> str:
    return escape(_visible(value))


def _tip(lines: Sequence[str]) -> str:
    """A tooltip of several lines; a line break inside one is shown as ``\\x0a``."""
    return "\n".join(_text(line) for line in lines)


def _attr(value: str) -> str:
    """A quoted attribute value (quotes included)."""
    return quoteattr(_visible(value))


def _cut(value: str, chars: int) -> str:
    return value if len(value) <= chars else value[: chars - 1] + "…"


def _n(value: float) -> str:
    return f"{value:.1f}"


def _secs(value: float) -> str:
    return f"{value:.2f}s" if value < 60 else span_label(value)


def _offset(at: float, t: Timeline) -> str:
    return f"+{_secs(at - t.start)}"


def _utc(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
