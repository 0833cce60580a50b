"""MkDocs hook: the benchmark page, generated from bench/results/*.json.

docs/benchmarks.md is a short introduction with a marker line; at build
time this hook puts the stored results in the marker's place, so the page
always shows what ``python -m bench --json bench/results/latest.json`` (and
``bench/async_tasks.py --json bench/results/async.json``, ``python -m bench
--only cluster --json bench/results/cluster.json``) last wrote, never a
hand-copied table:

- a file with ``figures`` (``bench/report.py``'s JSON): its run (date,
  machine, versions), one table per workload (figure, unit, flowbaton,
  peer, peer's value, flowbaton/peer, target) and an SVG bar chart of the
  flowbaton/peer ratios on a log scale, drawn here (no JavaScript);
- ``async.json`` (``bench/async_tasks.py``): sync against async tasks.

``python docs/hooks/benchmarks.py`` prints the generated Markdown.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

MARKER = "<!-- bench-results -->"
PAGE = "benchmarks.md"
RESULTS = Path("bench") / "results"

#: Files shown first, in this order; any other *.json with figures follows.
ORDER = ("latest.json", "cluster.json", "async.json")

#: Workload titles, by the first part of a figure's key.
WORKLOADS = {
    "persistence": "Persistence overhead",
    "failover": "Failover",
    "zombie": "Zombie (a stopped owner wakes up)",
    "board": "Board scale",
    "fleet": "Fleet",
    "dbos": "DBOS Transact",
    "cluster": "Redis Cluster",
}

#: Units where more is better for flowbaton; in every other unit less is.
MORE_IS_BETTER = frozenset({"tasks/s", "flows/s", "steps/s"})

Doc = dict[str, Any]


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **_: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    root = Path(config["config_file_path"]).resolve().parent
    return markdown.replace(MARKER, render(root / RESULTS))


def render(folder: Path) -> str:
    """The Markdown of every results file in ``folder``."""
    sections = [_section(path, json.loads(path.read_text())) for path in _result_files(folder)]
    sections = [text for text in sections if text]
    return "\n\n".join(sections) if sections else f"No results are stored in `{RESULTS.as_posix()}/` yet."


def _result_files(folder: Path) -> list[Path]:
    found = {path.name: path for path in sorted(folder.glob("*.json"))}
    first = [found.pop(name) for name in ORDER if name in found]
    return first + list(found.values())


def _section(path: Path, doc: Doc) -> str:
    if "figures" in doc:
        return _figures_section(path.name, doc)
    if "noop" in doc:
        return _async_section(path.name, doc)
    return ""


# --- figures: bench/report.py's JSON ---------------------------------------------------------------------------


def _figures_section(name: str, doc: Doc) -> str:
    figures: list[Doc] = doc["figures"]
    # A row without a peer value (a ratio of flowbaton's own figures) names no peer.
    peers = sorted({_peer(fig) for fig in figures if _median(fig, "taskflow") is not None})
    parts = [f"## flowbaton against {' and '.join(peers) or 'itself'} (`{name}`)", _run_text(doc)]
    for title, group in _by_workload(figures):
        parts += [f"### {title}", _figures_table(group)]
    parts += ["### flowbaton / peer, every figure", ratio_chart(figures, f"flowbaton / peer ratios ({name})")]
    notes = doc.get("notes") or []
    if notes:
        parts += ["### Notes", "\n".join(f"- {_cell(note)}" for note in notes)]
    return "\n\n".join(parts)


def _run_text(doc: Doc) -> str:
    facts = [
        f"{doc['pairs']} pairs" if "pairs" in doc else "",
        f"{doc['wall_seconds']:.0f} s wall" if "wall_seconds" in doc else "",
    ]
    lines = [f"- **Run**: {doc.get('date', 'date unknown')}" + "".join(f", {fact}" for fact in facts if fact)]
    if "machine" in doc:
        load = f"load average {doc.get('load_at_start', 0.0):.2f} at start, {doc.get('load_at_end', 0.0):.2f} at end"
        lines.append(f"- **Machine**: {doc['machine']}; {load}")
    versions = ", ".join(f"{name} {version}" for name, version in (doc.get("versions") or {}).items())
    if versions:
        lines.append(f"- **Versions**: {versions}")
    lines.append("- Medians of each side; the ratio is the median of the per-pair ratios flowbaton / peer.")
    return "\n".join(lines)


def _by_workload(figures: list[Doc]) -> list[tuple[str, list[Doc]]]:
    groups: dict[str, list[Doc]] = {}
    for fig in figures:
        groups.setdefault(fig["key"].split(".")[0], []).append(fig)
    return [(WORKLOADS.get(key, key.capitalize()), group) for key, group in groups.items()]


def _figures_table(figures: list[Doc]) -> str:
    peers = {_peer(fig) for fig in figures}
    peer = peers.pop() if len(peers) == 1 else None  # one peer: its name heads the column
    rows = [
        f"| figure | unit | flowbaton | {peer or 'peer'} | flowbaton/{peer or 'peer'} | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for fig in figures:
        unit = fig["unit"]
        label = fig["label"] + (f" (errors: {'; '.join(fig['errors'][:2])})" if fig.get("errors") else "")
        label += f" ({fig['note']})" if fig.get("note") else ""
        theirs = number(_median(fig, "taskflow"), unit) + ("" if peer else f" ({_peer(fig)})")
        cells = [label, unit, number(_median(fig, "flowbaton"), unit), theirs, ratio_text(_median(fig, "ratio")),
                 _target(fig)]
        rows.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(rows)


def _peer(fig: Doc) -> str:
    """Who the other side is; bench/stats.py keeps its values under "taskflow" whoever it is."""
    return str(fig.get("peer") or "TaskFlow")


def _median(fig: Doc, side: str) -> float | None:
    value = (fig.get(side) or {}).get("median")
    return None if value is None or not math.isfinite(value) else float(value)


def _target(fig: Doc) -> str:
    if not fig.get("target"):
        return ""
    verdict = {True: "met", False: "**MISSED**", None: "no data"}[fig.get("met")]
    return f"{fig['target']}: {verdict}"


def number(value: float | None, unit: str) -> str:
    """A median as bench/report.py prints it: "never" for a time that never came."""
    if value is None:
        return "never" if unit == "s" else "-"
    if unit in ("tasks/s", "s (total)") or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if unit == "s" or value != int(value) else f"{value:.0f}"


def ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- the chart ----------------------------------------------------------------------------------------------------

# Pixels: the labels start at LABEL_X; the plot runs from LEFT to WIDTH - RIGHT.
WIDTH, LABEL_X, LEFT, RIGHT, ROW, TOP = 760, 4, 56, 64, 34, 30
BETTER, WORSE, EVEN = "#2e7d32", "#e65100", "#78909c"


def ratio_chart(figures: list[Doc], title: str) -> str:
    """An inline SVG: one bar per figure from 1x to its ratio, log scale.

    Green when flowbaton is better (more of a rate, less of a time or a
    count), orange when worse, grey within 10 % of even. A ratio of 0 (none
    at all on flowbaton's side) is drawn to the left edge and labelled 0x.
    """
    rows = [(fig, ratio) for fig in figures if (ratio := _median(fig, "ratio")) is not None]
    if not rows:
        return "No figure has a ratio."
    low, high = _decades([ratio for _, ratio in rows])
    scale = _LogScale(low, high, LEFT, WIDTH - RIGHT)
    height = TOP + ROW * len(rows) + 10
    body = _axis(scale, height) + [_bar(i, fig, ratio, scale) for i, (fig, ratio) in enumerate(rows)]
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
        f'aria-label="{html.escape(title)}" font-family="sans-serif" font-size="12">'
        f"<title>{html.escape(title)}</title>" + "".join(body) + "</svg>"
    )
    caption = (f"{html.escape(title)}, log scale: green where flowbaton is better, orange where it is worse, "
               "grey within 10 % of even.")
    return f'<figure class="bench-chart">{svg}<figcaption>{caption}</figcaption></figure>'


class _LogScale:
    def __init__(self, low: float, high: float, left: float, right: float) -> None:
        self.low, self.high, self.left, self.right = low, high, left, right

    def __call__(self, value: float) -> float:
        value = min(max(value, 10**self.low), 10**self.high)
        share = (math.log10(value) - self.low) / (self.high - self.low)
        return self.left + share * (self.right - self.left)


def _decades(ratios: list[float]) -> tuple[int, int]:
    """Whole decades around the ratios and 1x; one more on the left for a 0x bar to end at."""
    positive = [ratio for ratio in ratios if ratio > 0] or [1.0]
    low = min(0, math.floor(math.log10(min(positive))))
    high = max(1, math.ceil(math.log10(max(positive))))
    return (low - 1 if 0 in ratios else low), high


def _axis(scale: _LogScale, height: int) -> list[str]:
    parts = []
    for power in range(int(scale.low), int(scale.high) + 1):
        x = scale(10.0**power)
        weight = "1.5" if power == 0 else "0.5"
        parts.append(f'<line x1="{x:.1f}" y1="{TOP - 12}" x2="{x:.1f}" y2="{height - 6}" stroke="currentColor" '
                     f'stroke-opacity="0.4" stroke-width="{weight}"/>')
        parts.append(f'<text x="{x:.1f}" y="{TOP - 16}" text-anchor="middle" fill="currentColor">'
                     f"{_decade_label(power)}</text>")
    return parts


def _decade_label(power: int) -> str:
    return f"{10.0**power:g}x" if power < 0 else f"{10**power}x"


def _bar(index: int, fig: Doc, ratio: float, scale: _LogScale) -> str:
    y = TOP + index * ROW
    one, end = scale(1.0), scale(ratio) if ratio > 0 else scale.left
    left, width = min(one, end), max(abs(end - one), 1.0)
    label = fig["label"] if len(fig["label"]) <= 110 else fig["label"][:107] + "..."
    value = "0x" if ratio == 0 else ratio_text(ratio)
    anchor, value_x = ("start", left + width + 4) if end >= one else ("end", left - 4)
    tip = html.escape(f"{fig['label']} ({fig['unit']}): {value}")
    return (
        f"<g><title>{tip}</title>"
        f'<text x="{LABEL_X}" y="{y + 10}" fill="currentColor">{html.escape(label)}</text>'
        f'<rect x="{left:.1f}" y="{y + 15}" width="{width:.1f}" height="12" fill="{_colour(fig, ratio)}"/>'
        f'<text x="{value_x:.1f}" y="{y + 25}" text-anchor="{anchor}" fill="currentColor">{value}</text></g>'
    )


def _colour(fig: Doc, ratio: float) -> str:
    if ratio > 0 and abs(math.log10(ratio)) < math.log10(1.1):
        return EVEN
    better = ratio > 1 if fig["unit"] in MORE_IS_BETTER else ratio < 1
    return BETTER if better else WORSE


# --- async.json: bench/async_tasks.py -----------------------------------------------------------------------------


def _async_section(name: str, doc: Doc) -> str:
    parts = [f"## Async tasks against sync tasks (`{name}`)",
             "`python bench/async_tasks.py --json bench/results/async.json`: the same flows with "
             "`async def` tasks and with plain ones, in one run."]
    parts += ["### No-op tasks/s", _table(
        ["backend", "sync tasks/s", "async tasks/s", "sync / async (target: within 1.5x)"],
        doc.get("noop", []),
        lambda row: [row["backend"], f"{row['sync']:,.0f}", f"{row['async']:,.0f}",
                     f"{row['ratio']:.2f}x: {'met' if row['ratio'] <= 1.5 else '**MISSED**'}"],
    )]
    if doc.get("concurrent"):
        parts += ["### Concurrent flows, one replica", _table(
            ["tasks", "flows", "started", "seconds", "started/s", "RSS per flow in flight (KiB)"],
            doc["concurrent"],
            lambda row: [row["kind"], f"{row['flows']:,}", f"{row['started']:,}", f"{row['seconds']:.1f}",
                         f"{row['per_second']:,.0f}", f"{row['rss_kib_per_flow']:.1f}"],
        )]
    if doc.get("blocking"):
        parts += ["### The host's event loop", _table(
            ["flows", "seconds", "asyncio debug mode", "host callbacks over 20 ms (target: none)",
             "slowest host callback: wall / CPU (ms)", "most CPU of any host callback (ms)",
             "task-loop callbacks over 20 ms"],
            doc["blocking"],
            lambda row: [f"{row['flows']:,}", f"{row['seconds']:.1f}", "on" if row["debug"] else "off",
                         str(row["host_slow"]),
                         f"{row['host_slowest'] * 1000:.0f} / {row['host_slowest_cpu_of_slow'] * 1000:.1f}",
                         f"{row['host_max_cpu'] * 1000:.1f}", str(row["tasks_slow"])],
        )]
    return "\n\n".join(parts)


def _table(header: list[str], rows: Iterable[Doc], cells: Callable[[Doc], list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in cells(row)) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(Path(__file__).resolve().parents[2] / RESULTS))
