"""One HTTP exchange as plain values: what the app reads and what it answers.

The app (``app``) is a function from ``Request`` to ``Response``, so every
rule (routing, escaping, the security headers, the login and CSRF checks)
is tested without a socket; the servers (``server``, and the replica's
probe port through ``mount``) only copy bytes in and out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

__all__ = ["Request", "Response", "HTML", "MAX_BODY"]

HTML = "text/html; charset=utf-8"
#: The largest request body read: an action's form is a few hundred bytes.
MAX_BODY = 16 * 1024


@dataclass(frozen=True)
class Request:
    """``target`` is the path and query as sent; ``headers`` have lower-case names."""

    method: str
    target: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def path(self) -> str:
        """The path, still percent-encoded: segments are split before decoding,
        so an encoded ``/`` in a flow id stays inside its segment."""
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> dict[str, str]:
        """The query's parameters (the first value of each; empty ones dropped)."""
        pairs = parse_qsl(urlsplit(self.target).query, errors="replace")
        return {name: value for name, value in reversed(pairs) if value}

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def cookies(self) -> dict[str, str]:
        """Split by hand: ``SimpleCookie`` stops at the first cookie it cannot
        parse, and other servers on this host may have set any (cookies are
        per host, not per port)."""
        pairs = (part.strip().partition("=") for part in (self.header("cookie") or "").split(";"))
        return {name: value for name, _, value in pairs if name}

    def form(self) -> dict[str, str]:
        """An ``application/x-www-form-urlencoded`` body's fields (first value of each)."""
        pairs = parse_qsl(self.body.decode("utf-8", "replace"), errors="replace")
        return {name: value for name, value in reversed(pairs)}


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = HTML
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header_list(self) -> list[tuple[str, str]]:
        """Every header to send, ``Content-Type`` and ``Content-Length`` included."""
        return [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))), *self.headers]
