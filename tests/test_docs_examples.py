"""The Python examples of the user guide run, so they cannot rot.

Each page's ```python blocks run in order, the way the page tells a reader
to use them, in a fresh temporary directory that is the working directory
and first on ``sys.path``, with ``FLOWBATON_BACKEND`` naming a SQLite file
there (and inherited by any process an example starts):

- a block with a file name (```python title="orders.py"```, which MkDocs
  Material shows as the block's title) is written to that file, for the
  blocks after it to import (it is compiled here, so a typo in a module no
  later block imports fails too);
- any other block is run as a script would be: in a fresh namespace, with
  ``__name__ == "__main__"``, and with the modules the page wrote imported
  afresh (each snippet stands for a new ``python`` process);
- a block right after the line ``<!-- not-run -->`` is a fragment, skipped.

A failing block's traceback names the page and the page's own line numbers.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("concepts.md", "writing-flows.md", "upgrading.md")
NOT_RUN = "<!-- not-run -->"

_OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, its first line of code (1-based,
    in the page), its text without the fence's indent, its file name."""

    language: str
    line: int
    code: str
    title: str | None
    skipped: bool


def fenced_blocks(text: str) -> Iterator[Block]:
    """Every fenced block of a Markdown page, in order (indented ones, as in
    an admonition, too)."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = _OPENING.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        end = _closing(lines, index + 1, indent, fence)
        body = [line[len(indent):] if line.startswith(indent) else line.lstrip() for line in lines[index + 1:end]]
        title = _TITLE.search(info)
        yield Block(
            language=info.split(" ", 1)[0].lower() if info else "",
            line=index + 2,
            code="\n".join(body) + "\n",
            title=title["title"] if title else None,
            skipped=_marked_not_run(lines, index),
        )
        index = end + 1


def _closing(lines: list[str], start: int, indent: str, fence: str) -> int:
    for index in range(start, len(lines)):
        stripped = lines[index].strip()
        if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
            return index
    raise AssertionError(f"a code block opened with {fence} at line {start} is never closed")


def _marked_not_run(lines: list[str], fence_index: int) -> bool:
    """The nearest non-blank line before the fence is the marker."""
    for line in reversed(lines[:fence_index]):
        if line.strip():
            return line.strip() == NOT_RUN
    return False


def python_blocks(page: str) -> list[Block]:
    return [block for block in fenced_blocks((DOCS / page).read_text(encoding="utf-8"))
            if block.language in ("python", "py")]


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory of its own, importable, with its own store; the
    modules a page writes are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FLOWBATON_BACKEND", f"sqlite:///{tmp_path / 'flowbaton.db'}")
    # A page may write a module twice (the code before and after a deploy):
    # no bytecode cache may stand in for the second version.
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    for name in ("FLOWBATON_ALLOW", "FLOWBATON_BUILD"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    _forget_modules(tmp_path)


def _forget_modules(folder: Path) -> None:
    """Drop every module imported from ``folder``, so the next import reads
    its file as it is now."""
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if origin is not None and Path(origin).resolve().parent == folder.resolve():
            del sys.modules[name]
    importlib.invalidate_caches()


def run_page(page: str, folder: Path) -> int:
    """Write or run each block of ``page`` in order; the number run."""
    path = DOCS / page
    ran = 0
    for block in python_blocks(page):
        if block.skipped:
            continue
        # Padding keeps the page's line numbers in tracebacks.
        source = "\n" * (block.line - 1) + block.code
        code = compile(source, str(path), "exec")
        if block.title is not None:
            (folder / block.title).write_text(block.code, encoding="utf-8")
            continue
        _forget_modules(folder)
        exec(code, {"__name__": "__main__"})
        ran += 1
    return ran


@pytest.mark.slow  # the concepts page kills a process to show a takeover
@pytest.mark.parametrize("page", PAGES)
def test_the_examples_of_the_page_run(page: str, scratch: Path) -> None:
    assert run_page(page, scratch) > 0, f"docs/{page} has no Python example to run"


@pytest.mark.parametrize("page", PAGES)
def test_every_not_run_marker_stands_before_a_python_block(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    marked = [block for block in fenced_blocks(text) if block.skipped]
    assert len(marked) == text.count(NOT_RUN), f"docs/{page}: a {NOT_RUN} marker is not right before a code block"
    assert all(block.language in ("python", "py") for block in marked), f"docs/{page}: {NOT_RUN} on a non-Python block"


def test_the_extractor_reads_titles_markers_and_indented_blocks() -> None:
    page = "\n".join([
        "text",
        '```python title="flows.py"',
        "x = 1",
        "```",
        "<!-- not-run -->",
        "",
        "```python",
        "fragment(...)",
        "```",
        "!!! note",
        "    ```py",
        "    if True:",
        "        y = 2",
        "    ```",
        "```sh",
        "flowbaton demo",
        "```",
    ])
    blocks = list(fenced_blocks(page))
    assert [(b.language, b.line, b.title, b.skipped) for b in blocks] == [
        ("python", 3, "flows.py", False), ("python", 8, None, True), ("py", 12, None, False), ("sh", 16, None, False),
    ]
    assert blocks[2].code == "if True:\n    y = 2\n"
