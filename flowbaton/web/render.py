"""Pages from templates, with every value escaped; and our static files.

Jinja2 with autoescape on for every template, and ``StrictUndefined`` so a
misspelt name in a template is an error in the tests, not an empty cell.
``finalize`` also makes control characters visible (``formats.visible``)
in every value printed. The only markup a page embeds unescaped is our own
(``Markup``: the timeline's SVG, whose texts its writer escapes).
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from .drawing import timeline_css
from .formats import ago, short, span, visible, when

__all__ = ["Renderer", "STATIC"]

#: The files served under ``/static/``: name -> content type.
STATIC = {"style.css": "text/css; charset=utf-8", "refresh.js": "text/javascript; charset=utf-8",
          "timeline.css": "text/css; charset=utf-8"}


def _finalize(value: Any) -> Any:
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return visible(value)


class Renderer:
    """The templates of ``flowbaton/web/templates`` and the files of ``static``,
    read once; ``base`` is the path prefix every link starts with."""

    def __init__(self, base: str = "") -> None:
        self.base = base
        self.env = Environment(loader=PackageLoader("flowbaton.web", "templates"), autoescape=True,
                               undefined=StrictUndefined, finalize=_finalize, trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters.update(when=when, span=span, short=short, ago=ago, flow_url=self.flow_url)
        self.env.globals.update(base=base)
        folder = resources.files("flowbaton.web") / "static"
        files = {name: (folder / name).read_bytes() for name in STATIC if name != "timeline.css"}
        self.static = {**files, "timeline.css": timeline_css()}

    def flow_url(self, flow_id: str) -> str:
        """A flow page's path: the id is one path segment whatever it holds."""
        return f"{self.base}/flows/{quote(flow_id, safe='')}"

    def page(self, template: str, **context: Any) -> bytes:
        html = self.env.get_template(template).render(**context)
        return html.encode("utf-8", "replace")  # a lone surrogate in a record must not fail the page
