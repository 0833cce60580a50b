"""Make the pictures the README and the docs show, from a real takeover.

Runs ``flowbaton demo --keep`` (two replica processes on SQLite, one killed
with SIGKILL mid-flow), then draws that flow three ways:

- ``images/timeline.svg``: ``flowbaton show --svg``'s standalone SVG;
- ``images/timeline-terminal.png``: ``flowbaton show --timeline`` in
  colour, as a terminal shows it (the ANSI colours turned into HTML here,
  then photographed by headless Chromium);
- ``images/flow-page.png``: the flow's page in ``flowbaton ui``.

Needs Debian's ``chromium`` (what the browser tests use) and the ``ui``
extra. Run from the repository: ``python docs/screenshots.py``.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from flowbaton.backends import open_backend
from flowbaton.cli.timeline import render_timeline
from flowbaton.ops import query
from flowbaton.ops.timeline import timeline
from flowbaton.ops.timeline_svg import to_svg

IMAGES = Path(__file__).parent / "images"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
#: The terminal's colours for the SGR codes ``cli.timeline`` writes.
ANSI = {31: "#ff6b6b", 32: "#8fd18b", 33: "#f5c26b", 34: "#6fa8ff", 35: "#d9a0f0", 36: "#6fd6d6",
        91: "#ff9c9c", 92: "#b5eab0", 93: "#ffe08a", 94: "#a8c8ff", 95: "#ecc2ff", 96: "#a4f0f0"}


def main() -> int:
    IMAGES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="flowbaton-shots-") as tmp:
        folder = Path(tmp)
        subprocess.run([sys.executable, "-m", "flowbaton", "demo", "--keep", str(folder / "demo")], check=True,
                       stdout=subprocess.DEVNULL)
        url = f"sqlite:///{folder / 'demo' / 'demo.db'}"
        backend = open_backend(url)
        try:
            [flow] = backend.list_flows()
            drawn = timeline(query.show(backend, flow.id))
        finally:
            backend.close()
        (IMAGES / "timeline.svg").write_text(to_svg(drawn), encoding="utf-8")
        page = folder / "terminal.html"
        page.write_text(_terminal_page(render_timeline(drawn, width=100, color=True)), encoding="utf-8")
        _photograph(page.as_uri(), IMAGES / "timeline-terminal.png", "1000,436")
        ui = subprocess.Popen([sys.executable, "-m", "flowbaton", "--backend", url, "ui", "--port", "0"],
                              stderr=subprocess.PIPE, text=True)
        try:
            assert ui.stderr is not None
            served = re.search(r"(http://\S+/)", ui.stderr.readline())
            if served is None:
                raise SystemExit("flowbaton ui did not say where it serves")
            _photograph(f"{served.group(1)}flows/{flow.id}", IMAGES / "flow-page.png", "1280,1420")
        finally:
            ui.terminate()
            ui.wait()
    for name in ("timeline.svg", "timeline-terminal.png", "flow-page.png"):
        print(f"wrote {IMAGES / name}")
    return 0


def _terminal_page(text: str) -> str:
    """``text`` with its ANSI colours as a dark terminal page."""
    out, open_span = [], False
    for part in re.split(r"(\x1b\[\d+m)", text):
        code = re.fullmatch(r"\x1b\[(\d+)m", part)
        if code is None:
            out.append(html.escape(part))
            continue
        if open_span:
            out.append("</span>")
            open_span = False
        colour = ANSI.get(int(code.group(1)))
        if colour:
            out.append(f'<span style="color:{colour}">')
            open_span = True
    body = "".join(out) + ("</span>" if open_span else "")
    return ("<!doctype html><meta charset=utf-8><body style='margin:0;background:#1e1e1e'>"
            "<pre style='margin:0;padding:14px 18px;color:#ddd;font:14px/1.35 \"DejaVu Sans Mono\",monospace'>"
            f"$ flowbaton show FLOW_ID --timeline\n{body}</pre>")


def _photograph(url: str, out: Path, size: str) -> None:
    subprocess.run([CHROMIUM, *FLAGS, f"--window-size={size}", f"--screenshot={out}", url], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


if __name__ == "__main__":
    raise SystemExit(main())
