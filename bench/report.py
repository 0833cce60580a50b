"""The results: a table for people (Markdown, so it pastes into the README)
and the same as JSON for machines."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from .stats import Figure

__all__ = ["environment", "render", "write_json"]


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    found = re.search(r"model name\s*:\s*(.+)", text)
    return found.group(1).strip() if found else "unknown CPU"


def _memory_gib() -> float:
    try:
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        return int(first.split()[1]) / 1024 / 1024
    except (OSError, IndexError, ValueError):
        return 0.0


def _version_of(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _redis_server_version() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(r"v=(\S+)", out)
    return found.group(1) if found else "unknown"


def _zookeeper_version() -> str:
    if os.environ.get("FLOWBATON_TEST_ZOOKEEPER"):
        return "external (FLOWBATON_TEST_ZOOKEEPER)"
    for jar in sorted(Path("/usr/share/java").glob("zookeeper-[0-9]*.jar")):
        return jar.name.removeprefix("zookeeper-").removesuffix(".jar")
    return "unknown"


def environment(taskflow: str) -> dict[str, Any]:
    import flowbaton

    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{_cpu()}, {os.cpu_count()} cores, {_memory_gib():.0f} GiB, {platform.system()} "
                   f"{platform.release()}",
        "load_at_start": os.getloadavg()[0],
        "versions": {
            "python": sys.version.split()[0], "flowbaton": flowbaton.__version__, "taskflow": taskflow,
            "kazoo": _version_of("kazoo"), "redis-py": _version_of("redis"),
            "zookeeper": _zookeeper_version(), "redis-server": _redis_server_version(),
        },
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "never" if unit == "s" else "-"
    if unit in ("tasks/s", "s (total)") or abs(value) >= 100:
        return f"{value:,.0f}"
    if unit == "s":
        return f"{value:.2f}"
    return f"{value:.2f}" if value != int(value) else f"{value:.0f}"


def _met(figure: Figure) -> str:
    if figure.target is None:
        return ""
    met = figure.target.met(figure)
    verdict = {True: "met", False: "MISSED", None: "no data"}[met]
    return f"{figure.target.text()}: {verdict}{figure.target.misses(figure)}"


def render(figures: list[Figure], env: dict[str, Any], notes: list[str]) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items())
    lines = [
        f"flowbaton vs its peers — {env['date']}, {env['pairs']} pairs, {env['wall_seconds']:.0f} s wall",
        f"machine: {env['machine']}; load average {env['load_at_start']:.2f} at start, "
        f"{env.get('load_at_end', 0.0):.2f} at end",
        f"versions: {versions}",
        "",
        "| figure | unit | flowbaton | peer | peer's value | flowbaton/peer | target |",
        "|---|---|---:|---|---:|---:|---|",
    ]
    for fig in figures:
        ratio = fig.ratio()
        ratio_text = "-" if ratio is None else (f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.2f}x")
        label = fig.label + (" (errors: " + "; ".join(fig.errors[:2]) + ")" if fig.errors else "")
        lines.append(f"| {label} | {fig.unit} | {_fmt(fig.median('flowbaton'), fig.unit)} | {fig.peer} | "
                     f"{_fmt(fig.median('taskflow'), fig.unit)} | {ratio_text} | {_met(fig)} |")
    lines += ["", "Medians of each side; the ratio column is the median of the per-pair ratios."]
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


def write_json(path: Path, figures: list[Figure], env: dict[str, Any], notes: list[str]) -> None:
    doc = {**env, "notes": notes, "figures": [fig.as_json() for fig in figures]}
    path.write_text(json.dumps(doc, indent=2) + "\n")
