"""MkDocs hook: links out of docs/ become links to the repository's source.

The pages are written to read right on GitHub, where ``../deploy/README.md``
or ``../flowbaton/backends/base.py`` is a file next to them. The site holds
only docs/, so MkDocs would report those links as broken, and ``--strict``
would fail on them. Before MkDocs checks a page's links, this hook rewrites
every relative link (and image) whose target *exists* in the repository
but is not part of the site (outside docs/, or left out by
``exclude_docs``) into a URL of that file on GitHub
(``repo_url``/blob/main/...). Links to the site's own pages and files are
left for MkDocs to check, so a missing page or anchor still fails the
build, and so does a link to a file that exists nowhere (it is left as
written).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

#: The branch the site's source links point at.
BRANCH = "main"

# ``](target)`` or ``](target "title")`` of an inline link or image, and a
# reference definition ``[id]: target``. The link text may span lines; only
# the target matters here.
_INLINE = re.compile(r"(?P<head>\]\()(?P<target>[^)\s]+)")
_REFERENCE = re.compile(r"^(?P<head> {0,3}\[[^\]]+\]:[ \t]*)(?P<target>\S+)", re.MULTILINE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **_: Any) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    root = Path(config["config_file_path"]).resolve().parent
    rewrite = _Rewriter(docs_dir, root, (docs_dir / page.file.src_uri).parent, config["repo_url"].rstrip("/"), files)
    return _outside_code(markdown, rewrite.text)


class _Rewriter:
    def __init__(self, docs_dir: Path, root: Path, page_dir: Path, repo_url: str, files: Any) -> None:
        self.docs_dir, self.root, self.page_dir, self.repo_url, self.files = docs_dir, root, page_dir, repo_url, files

    def text(self, chunk: str) -> str:
        chunk = _INLINE.sub(self._match, chunk)
        return _REFERENCE.sub(self._match, chunk)

    def _match(self, found: re.Match[str]) -> str:
        return found.group("head") + self.target(found.group("target"))

    def target(self, target: str) -> str:
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
            return target  # a URL, an anchor on this page, or a site-absolute path: not ours
        path = (self.page_dir / unquote(parts.path)).resolve()
        anchor = f"#{parts.fragment}" if parts.fragment else ""
        if self._on_site(path):
            # ``../docs/images/x.png`` reads on GitHub; MkDocs wants it without the detour
            return Path(os.path.relpath(path, self.page_dir)).as_posix() + anchor
        if not path.is_relative_to(self.root) or not path.exists():
            return target  # MkDocs reports it: broken here and on GitHub alike
        # out of docs/, or a file of docs/ that is not part of the site (exclude_docs)
        kind = "tree" if path.is_dir() else "blob"
        return f"{self.repo_url}/{kind}/{BRANCH}/{PurePosixPath(path.relative_to(self.root).as_posix())}{anchor}"

    def _on_site(self, path: Path) -> bool:
        if not path.is_relative_to(self.docs_dir):
            return False
        found = self.files.get_file_from_path(path.relative_to(self.docs_dir).as_posix())
        return found is not None and not found.inclusion.is_excluded()


def _outside_code(markdown: str, change: Any) -> str:
    """Apply ``change`` to the text between fenced code blocks only."""
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        opening = _FENCE.match(line)
        if fence is None and opening:
            out.append(change("".join(prose)))
            prose, fence = [], opening.group(1)
            out.append(line)
        elif fence is not None:
            out.append(line)
            if line.strip().startswith(fence[0] * len(fence)) and not line.strip().strip(fence[0]):
                fence = None
        else:
            prose.append(line)
    out.append(change("".join(prose)))
    return "".join(out)
