"""Who may look and who may act: the headers, the Host check, sessions, CSRF.

Every stored string is untrusted (anyone with write access to the store can
fill a failure message), so besides escaping (``render``) each page is sent
with a Content-Security-Policy that runs only our own script file: markup
that slipped through could still not run. ``X-Frame-Options`` keeps the
action buttons out of another site's frames.

A server on loopback is reachable from any page the operator's browser
opens, through DNS rebinding (evil.example resolving to 127.0.0.1): the
browser then sends ``Host: evil.example``, which ``host_allowed`` refuses.

Actions (``--allow-actions``) need a session: a cookie obtained by
presenting the server's token once (``login``), HttpOnly and
SameSite=Strict. A form also carries a CSRF token (an HMAC of the session
under a secret that never leaves the process) and must come from our own
origin (``Origin``, else ``Referer``). Sessions are stateless, signed values:
nothing to store, and all of them end with the process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from .messages import Request

__all__ = ["SECURITY_HEADERS", "Guard", "LOOPBACK_NAMES", "is_loopback"]

SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
]

#: Names of this machine a browser may put in ``Host`` for a loopback server.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_NAMES or host.startswith("127.")


def _host_name(header: str) -> str:
    """``Host``'s name without the port (``[::1]:8765`` -> ``[::1]``)."""
    if header.startswith("["):
        return header.split("]", 1)[0] + "]"
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """The checks of one server: ``hosts`` are the Host names accepted (None:
    any, a server not on loopback); ``token`` is the one that opens a
    session (None: no actions, so no sessions)."""

    def __init__(self, *, token: str | None = None, hosts: frozenset[str] | None = None,
                 secret: bytes | None = None) -> None:
        self.token = token
        self.hosts = hosts
        self._secret = secret or secrets.token_bytes(32)
        # A name of its own per process: two servers on one host (cookies
        # ignore ports) do not overwrite each other's session.
        self.cookie_name = "flowbaton_ui_" + self.sign("cookie-name")[:8]

    def sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode("utf-8", "replace"), hashlib.sha256).hexdigest()

    def signed(self, text: str, signature: str) -> bool:
        return hmac.compare_digest(self.sign(text), signature)

    # ------------------------------------------------------------ reading

    def host_allowed(self, request: Request) -> bool:
        if self.hosts is None:
            return True
        host = request.header("host")
        return host is not None and _host_name(host.strip().lower()) in self.hosts

    # ------------------------------------------------------------ sessions

    def login(self, presented: str) -> str | None:
        """A new session's cookie value if ``presented`` is the token."""
        if self.token is None or not hmac.compare_digest(presented.encode(), self.token.encode()):
            return None
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self.sign('session:' + nonce)}"

    def session(self, request: Request) -> str | None:
        """The request's session (its cookie value) if we signed it."""
        value = request.cookies.get(self.cookie_name, "")
        nonce, _, signature = value.partition(".")
        if self.token is None or not nonce or not self.signed("session:" + nonce, signature):
            return None
        return value

    def session_cookie(self, value: str) -> str:
        return f"{self.cookie_name}={value}; Path=/; HttpOnly; SameSite=Strict"

    def csrf_token(self, session: str) -> str:
        return self.sign("csrf:" + session)

    # -------------------------------------------------------------- posts

    def refusal(self, request: Request, form: dict[str, str], *, needs_session: bool = True) -> str | None:
        """Why a form post is refused (None: accepted): not from our own
        origin, no session, or a CSRF token that is not this session's."""
        if not self.same_origin(request):
            return "the form was not sent from this server's own pages (Origin/Referer)"
        if not needs_session:
            return None
        session = self.session(request)
        if session is None:
            return "not logged in: open the login link the server printed when it started"
        if not hmac.compare_digest(form.get("csrf", "").encode(), self.csrf_token(session).encode()):
            return "the form's CSRF token is missing or not this session's: reload the page and try again"
        return None

    def same_origin(self, request: Request) -> bool:
        """``Origin`` (else ``Referer``) names the host the request was sent to."""
        host = request.header("host")
        source = request.header("origin") or request.header("referer")
        if not host or not source or source == "null":
            return False
        parts = urlsplit(source)
        return parts.scheme in ("http", "https") and parts.netloc.lower() == host.strip().lower()
