"""The web view on a socket: its own server, or mounted on a replica's port.

``UiServer`` is a stdlib ``ThreadingHTTPServer`` on a daemon thread, like
the replica's probe server (``observability.probes``): a slow page never
holds up another, and no client keeps the process alive. ``mount`` adapts
the app to that probe server's ``mounts`` hook (``flowbaton replica --ui``).
Both only copy bytes between the socket and ``WebApp.handle``.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..observability.probes import Mount
from .app import WebApp
from .messages import MAX_BODY, Request

__all__ = ["UiServer", "mount"]

log = logging.getLogger("flowbaton.web")


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class UiServer:
    """Serves ``app`` on ``host:port`` (port 0: any free one, see ``.port``)."""

    def __init__(self, app: WebApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server = (_IPv6Server if ":" in host else ThreadingHTTPServer)((host, port), _handler_for(app))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"flowbaton-ui-{self.port}",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}{self.app.options.base}/"

    def start(self) -> UiServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """In the calling thread, until ``close`` or an interrupt."""
        self._server.serve_forever()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> UiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_for(app: WebApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "flowbaton"

        def do_GET(self) -> None:
            self._answer(b"")

        def do_HEAD(self) -> None:
            self._answer(b"", send_body=False)

        def do_POST(self) -> None:
            # At most one byte past the limit is read: the app refuses a body
            # that long (413), and the connection closes after the answer.
            try:
                length = max(0, int(self.headers.get("Content-Length") or 0))
            except ValueError:
                length = 0
            self._answer(self.rfile.read(min(length, MAX_BODY + 1)))

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET  # the app answers 405

        def _answer(self, body: bytes, *, send_body: bool = True) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            response = app.handle(Request(self.command, self.path, headers, body))
            self.send_response(response.status)
            for name, value in response.header_list():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                self.wfile.write(response.body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


def mount(app: WebApp) -> Mount:
    """``app`` for the probe server's ``mounts``: the probe port reads no
    request body, so mount only an app without actions (a replica's pages
    never act: every POST is 405)."""
    def answer(method: str, target: str, headers: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        response = app.handle(Request(method, target, headers))
        return response.status, response.header_list(), response.body

    return answer
