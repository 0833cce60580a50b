"""``flowbaton show FLOW_ID --timeline`` and ``--svg FILE``: a flow's timeline drawn in text, or written as SVG.

One row per task, its attempts as runs of one character per replica (the
last letter or digit of its id when no other replica has it, so
``replica-A`` draws as ``A`` and ``web-2`` as ``2``; else the next free one
of ``SYMBOLS``), so a takeover reads as a change of letter; a mark at an attempt's end says how it ended
(``?`` in doubt, ``>`` running, ``x`` failed, ``<`` reverted). Above the
tasks, the flow's claims, and a marker row with ``|`` at each takeover and
``-`` over the time the flow stood still; below, the time axis, the
takeovers in words and the legend. Colour per replica when asked (a
terminal without ``NO_COLOR``: ``ops_commands``).

Every stored string passes through ``terminal.printable`` before it is
placed, and the only escape sequences in the output are the colours added
here: a task id or replica id cannot move the cursor or recolour a line.
The model is ``ops.timeline``; the same timeline drawn as SVG is
``ops.timeline_svg``, which ``--svg`` writes (``write_svg``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from ..ops.axis import axis, span_label
from ..ops.timeline import RUNNING_OUTCOME, Attempt, Timeline
from ..ops.timeline_svg import to_svg
from .common import UsageError
from .terminal import printable
from .views import seconds, when

__all__ = ["render_timeline", "add_timeline_options", "for_terminal", "write_svg", "SYMBOLS", "MAX_ROWS"]

#: Characters for replicas whose ids give none of their own (cycling past the last).
SYMBOLS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
NO_REPLICA = "#"
#: Task rows drawn; past that a line says how many were left out.
MAX_ROWS = 100
#: Replicas named in the legend.
MAX_LEGEND = 40
#: ANSI foreground colours by replica, cycling.
COLOURS = (34, 33, 32, 31, 36, 35, 94, 93, 92, 91, 96, 95)

_FAILED = frozenset({"failure", "retry", "revert failure", "cancelled"})
_KEY = "? in doubt  > running  x failed  < reverted  | takeover  - stood still"

Cell = tuple[str, int | None]  # a character and the replica whose colour it takes


def add_timeline_options(cmd: argparse.ArgumentParser) -> None:
    """``show``'s ``--timeline`` and ``--svg FILE``."""
    cmd.add_argument("--timeline", action="store_true",
                     help="draw the flow's timeline instead: each task's attempts by replica, the claims, takeovers "
                          "and how long the flow stood still (with --json: the timeline as JSON)")
    cmd.add_argument("--svg", metavar="FILE",
                     help="also write the timeline to FILE as a standalone SVG (open it in a browser: each "
                          "attempt's tooltip gives its times, replica, epoch and error)")


def for_terminal(t: Timeline) -> str:
    """``render_timeline`` as wide as the terminal, in colour on a terminal
    unless ``NO_COLOR`` is set (https://no-color.org)."""
    color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    return render_timeline(t, width=shutil.get_terminal_size().columns, color=color)


def write_svg(path: str, t: Timeline) -> None:
    """The SVG of ``t`` into ``path``, and ``wrote PATH`` on stderr. A path
    that cannot be opened (no such folder, a folder, no permission) is bad
    input, one line and exit 2 (``cli.main``), and nothing is written."""
    svg = to_svg(t)
    try:
        with open(path, "w", encoding="utf-8") as out:
            out.write(svg)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from err
    print(f"wrote {printable(path)}", file=sys.stderr)


def render_timeline(t: Timeline, *, width: int = 80, color: bool = False) -> str:
    """The timeline ``t`` in ``width`` columns (at least 40); ANSI colours per replica when ``color``."""
    grid = _Grid.of(t, max(width, 40))
    rows = [grid.row("claims", grid.claims())]
    rows += [grid.row(line.task_id, grid.attempts(line.attempts)) for line in t.tasks[:MAX_ROWS]]
    title = printable(f"flow {t.flow_id} ({_cut(t.name, 60)})  {t.state}")
    head = [f"{title}  {seconds(t.span)} from {when(t.start)}", ""]
    marker = [grid.row("", grid.takeovers())] if t.takeovers else []
    more = len(t.tasks) - MAX_ROWS
    tail = [f"… {more} more tasks (show --timeline --json lists them all)"] if more > 0 else []
    body = [_paint(row, color) for row in [*marker, *rows]]
    return "\n".join([*head, *body, *tail, *grid.axis(), *_takeover_lines(t), "", *_legend(grid, color)])


@dataclass(frozen=True)
class _Grid:
    """The columns: a label column, then ``bars`` cells from ``t.start`` to ``t.end``."""

    t: Timeline
    label: int
    bars: int
    index: dict[str, int]  # replica id -> its order of appearance
    symbols: list[str]  # by order of appearance: each replica's character

    @classmethod
    def of(cls, t: Timeline, width: int) -> _Grid:
        longest = max([6, *(len(printable(line.task_id)) for line in t.tasks[:MAX_ROWS])])
        label = min(longest, 24, width // 3)
        return cls(t, label, width - label - 2, {r: i for i, r in enumerate(t.replicas)}, _symbols(t.replicas))

    def symbol(self, who: int | None) -> str:
        return NO_REPLICA if who is None else self.symbols[who]

    def col(self, at: float) -> int:
        if self.t.span <= 0:
            return 0
        return min(max(int((at - self.t.start) / self.t.span * (self.bars - 1)), 0), self.bars - 1)

    def who(self, replica: str | None) -> int | None:
        return None if replica is None else self.index.get(replica)

    def row(self, label: str, cells: Sequence[Cell]) -> list[Cell]:
        return [(c, None) for c in _cut(printable(label), self.label).ljust(self.label + 2)] + list(cells)

    def blank(self) -> list[Cell]:
        return [(" ", None)] * self.bars

    def claims(self) -> list[Cell]:
        cells = self.blank()
        for claim in self.t.claims:
            who = self.who(claim.owner)
            for c in range(self.col(claim.claimed_at), self.col(claim.until) + 1):
                cells[c] = (self.symbol(who), who)
        return cells

    def attempts(self, attempts: Sequence[Attempt]) -> list[Cell]:
        """Each attempt's run of its replica's character, then the marks at
        their ends (after every run: a retry starting in the cell where an
        attempt in doubt ends does not hide its ``?``)."""
        cells = self.blank()
        for a in attempts:
            who = self.who(a.replica)
            for c in range(self.col(a.started_at), self.col(a.until) + 1):
                cells[c] = (self.symbol(who), who)
        for a in attempts:
            mark = _mark(a)
            if mark:
                cells[self.col(a.until)] = (mark, self.who(a.replica))
        return cells

    def takeovers(self) -> list[Cell]:
        cells = self.blank()
        for k in self.t.takeovers:
            end = self.col(k.at)
            if k.stood_still:
                for c in range(self.col(k.at - k.stood_still), end):
                    cells[c] = ("-", None)
            cells[end] = ("|", None)
        return cells

    def axis(self) -> list[str]:
        """A ruler with ``+`` at each tick, and under it the ticks' labels
        and the whole span at the right end (a tick's label that would
        overlap its neighbour is left out)."""
        ticks = [(self.col(self.t.start + s), text) for s, text in axis(self.t.span, max(1, self.bars // 10))]
        ruler = ["-"] * self.bars
        for col, _ in ticks:
            ruler[col] = "+"
        pad = " " * (self.label + 2)
        return [pad + "".join(ruler), (pad + _labels(ticks, span_label(self.t.span, 0.1), self.bars)).rstrip()]


def _labels(ticks: Sequence[tuple[int, str]], end: str, width: int) -> str:
    out, free, last = [" "] * width, 0, width - len(end)
    for col, text in ticks:
        if col >= free and col + len(text) < last:
            out[col:col + len(text)] = text
            free = col + len(text) + 1
    out[max(last, 0):] = end[-width:]
    return "".join(out)


def _mark(a: Attempt) -> str:
    if a.in_doubt or (a.open and a.outcome != RUNNING_OUTCOME):
        return "?"  # in doubt, or no end recorded for another reason: nobody knows when it ended
    if a.open:
        return ">"
    if a.outcome in _FAILED:
        return "x"
    return "<" if a.kind == "revert" else ""


def _symbols(replicas: Sequence[str]) -> list[str]:
    """Each replica's character: the last letter or digit of its id that no
    replica before it took (the part of pod and host names that differs),
    else the next free one of ``SYMBOLS``, cycling once all are taken."""
    taken: list[str] = []
    for n, replica in enumerate(replicas):
        own = [c for c in reversed(replica) if c.isascii() and c.isalnum()]
        free = [c for c in (*own, *SYMBOLS) if c not in taken]
        taken.append(free[0] if free else SYMBOLS[n % len(SYMBOLS)])
    return taken


def _paint(cells: Sequence[Cell], color: bool) -> str:
    """The cells as text; with ``color``, each run of one replica's cells in its colour."""
    if not color:
        return "".join(c for c, _ in cells).rstrip()
    out, current = [], None
    for char, who in cells:
        if who != current:
            out.append("\x1b[0m" if who is None else f"\x1b[{COLOURS[who % len(COLOURS)]}m")
            current = who
        out.append(char)
    return ("".join(out) + ("\x1b[0m" if current is not None else "")).rstrip()


def _takeover_lines(t: Timeline) -> list[str]:
    lines = []
    for k in t.takeovers:
        still = f", stood still {seconds(k.stood_still)}" if k.stood_still is not None else ""
        lines.append(printable(f"takeover at +{seconds(k.at - t.start)}: {k.from_owner or '?'} → {k.to_owner} "
                               f"(epoch {k.epoch}){still}"))
    return ["", *lines] if lines else []


def _legend(grid: _Grid, color: bool) -> list[str]:
    shown = grid.t.replicas[:MAX_LEGEND]
    lines = [_paint([(grid.symbol(i), i), *((c, None) for c in f"  {printable(r)}")], color)
             for i, r in enumerate(shown)]
    more = len(grid.t.replicas) - len(shown)
    return [*lines, *([f"… {more} more replicas"] if more > 0 else []), _KEY]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
