"""The replica's HTTP port: ``/metrics``, ``/healthz`` and ``/readyz``.

A stdlib ``ThreadingHTTPServer`` on a daemon thread: a probe or a scrape
never waits behind another, and a stuck client cannot keep the process
alive at exit. Probe bodies are one small JSON document saying why, so
``kubectl describe pod`` and ``curl`` show the reason, not just the code.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .health import ReplicaHealth, Verdict

__all__ = ["ProbeServer", "DEFAULT_METRICS_PORT"]

log = logging.getLogger("flowbaton.coordinator")

DEFAULT_METRICS_PORT = 9464  # what deploy/ and the docs use

Exposition = Callable[[], tuple[bytes, str]]  # body, content type


class ProbeServer:
    """Serves the probes of ``health`` and, if given, ``metrics`` text."""

    def __init__(self, health: ReplicaHealth, metrics: Exposition | None, *, port: int, host: str = "",
                 replica_id: str = "") -> None:
        self.health = health
        self.metrics = metrics
        self.replica_id = replica_id
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

    def _verdict(self, verdict: Verdict) -> tuple[int, bytes, str]:
        doc = {"ok": verdict.ok, "reason": verdict.reason, "replica_id": self.replica_id, **verdict.checks}
        body = (json.dumps(doc, default=str) + "\n").encode()
        return (200 if verdict.ok else 503), body, "application/json"


def _handler_for(probes: ProbeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "flowbaton"

        def do_GET(self) -> None:
            try:
                status, body, content_type = probes.answer(self.path)
            except Exception:  # a probe must answer, even about a bug
                log.exception("probe %s failed", self.path)
                status, body, content_type = 500, b"internal error\n", "text/plain; charset=utf-8"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the replica's own log

    return Handler
