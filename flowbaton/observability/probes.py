"""The replica's HTTP port: ``/metrics``, ``/healthz`` and ``/readyz``.

A stdlib ``ThreadingHTTPServer`` on a daemon thread: a probe or a scrape
never waits behind another, and a stuck client cannot keep the process
alive at exit. Probe bodies are one small JSON document saying why, so
``kubectl describe pod`` and ``curl`` show the reason, not just the code.

``mounts`` serves other pages on the same port under a path prefix: the
replica's CLI mounts the read-only operator pages (``flowbaton.web``) at
``/ui`` with ``--ui``. They arrive here as plain callables, so this module
(observability ranks below the operator API) imports none of them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .health import ReplicaHealth, Verdict

__all__ = ["ProbeServer", "DEFAULT_METRICS_PORT", "Mount"]

log = logging.getLogger("flowbaton.coordinator")

DEFAULT_METRICS_PORT = 9464  # what deploy/ and the docs use

Exposition = Callable[[], tuple[bytes, str]]  # body, content type
#: A web app under a path prefix: (method, path and query, request headers
#: with lower-case names) -> (status, response headers, body).
Mount = Callable[[str, str, Mapping[str, str]], tuple[int, list[tuple[str, str]], bytes]]


class ProbeServer:
    """Serves the probes of ``health`` and, if given, ``metrics`` text."""

    def __init__(self, health: ReplicaHealth, metrics: Exposition | None, *, port: int, host: str = "",
                 replica_id: str = "", mounts: Mapping[str, Mount] | None = None) -> None:
        self.health = health
        self.metrics = metrics
        self.replica_id = replica_id
        self.mounts = {prefix.rstrip("/"): app for prefix, app in (mounts or {}).items()}
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"flowbaton-http-{port}",
                                        daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when asked for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> ProbeServer:
        self._thread.start()
        log.info("serving /metrics, /healthz and /readyz on port %d", self.port,
                 extra={"replica_id": self.replica_id, "port": self.port})
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def answer(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type for a GET of ``path``."""
        route = path.split("?", 1)[0]
        if route == "/healthz":
            return self._verdict(self.health.liveness())
        if route == "/readyz":
            return self._verdict(self.health.readiness())
        if route == "/metrics" and self.metrics is not None:
            body, content_type = self.metrics()
            return 200, body, content_type
        return 404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8"

    def mounted(self, path: str) -> Mount | None:
        """The app mounted at ``path``'s prefix (``/ui``, ``/ui/...``), if any."""
        route = path.split("?", 1)[0]
        return next((app for prefix, app in self.mounts.items()
                     if route == prefix or route.startswith(prefix + "/")), None)

    def _verdict(self, verdict: Verdict) -> tuple[int, bytes, str]:
        doc = {"ok": verdict.ok, "reason": verdict.reason, "replica_id": self.replica_id, **verdict.checks}
        body = (json.dumps(doc, default=str) + "\n").encode()
        return (200 if verdict.ok else 503), body, "application/json"


def _handler_for(probes: ProbeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "flowbaton"

        def do_GET(self) -> None:
            app = probes.mounted(self.path)
            if app is not None:
                self._reply(*self._from_mount(app))
                return
            try:
                status, body, content_type = probes.answer(self.path)
            except Exception:  # a probe must answer, even about a bug
                log.exception("probe %s failed", self.path)
                status, body, content_type = 500, b"internal error\n", "text/plain; charset=utf-8"
            self._reply(status, [("Content-Type", content_type)], body)

        def do_POST(self) -> None:
            """Only a mounted app may answer another method (with its own refusal)."""
            app = probes.mounted(self.path)
            if app is None:
                self._reply(405, [("Allow", "GET"), ("Content-Type", "text/plain; charset=utf-8")],
                            b"method not allowed\n")
                return
            self._reply(*self._from_mount(app))

        def _from_mount(self, app: Mount) -> tuple[int, list[tuple[str, str]], bytes]:
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                return app(self.command, self.path, headers)
            except Exception:  # the probes' port must stay up whatever a mounted page does
                log.exception("%s %s failed", self.command, self.path)
                return 500, [("Content-Type", "text/plain; charset=utf-8")], b"internal error\n"

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the replica's own log

    return Handler
