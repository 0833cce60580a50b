"""The timeline's SVG (``ops.timeline_svg``) made fit for a page under our CSP.

A standalone drawing carries its stylesheet in a ``<style>`` element; the
pages' Content-Security-Policy (``style-src 'self'``) refuses inline styles,
so each drawing is inlined without it and its ``STYLESHEET`` is served as
our own file (``/static/timeline.css``). Text from the store is escaped in
the drawing's texts and attributes by the writer.
"""

from __future__ import annotations

from markupsafe import Markup

from ..ops.timeline import Timeline
from ..ops.timeline_svg import STYLESHEET, to_svg

__all__ = ["inline_svg", "timeline_css"]


def inline_svg(t: Timeline) -> Markup:
    """The drawing of ``t``, its stylesheet left out (``timeline_css`` has it)."""
    return Markup(to_svg(t, embed_style=False))


def timeline_css() -> bytes:
    """The stylesheet every drawing carries, as a file of its own."""
    return (STYLESHEET.strip() + "\n").encode()
