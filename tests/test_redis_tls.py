"""Redis driver over TLS (``rediss://``), against redis-server's own TLS port."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.errors import BackendUnavailable
from tests.contract.helpers import LEASE, make_flow, make_task
from tests.servers.redis import LocalRedis, free_port

pytestmark = pytest.mark.redis


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _certificates(home: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS test needs the openssl command to make certificates")
    files = {name: home / f"{name}.pem" for name in ("ca", "ca-key", "cert", "key", "csr")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=flowbaton test CA", "-keyout", str(files["ca-key"]),
             "-out", str(files["ca"]))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", str(files["key"]), "-out", str(files["csr"]))
    ext = home / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(files["csr"]), "-CA", str(files["ca"]),
             "-CAkey", str(files["ca-key"]), "-CAcreateserial", "-days", "2",
             "-extfile", str(ext), "-out", str(files["cert"]))
    return files


def test_rediss_with_a_private_ca(
    make_redis_server: Callable[..., LocalRedis], tmp_path: Path
) -> None:
    files = _certificates(tmp_path)
    tls_port = free_port()
    make_redis_server({
        "tls-port": str(tls_port),
        "tls-cert-file": str(files["cert"]),
        "tls-key-file": str(files["key"]),
        "tls-ca-cert-file": str(files["ca"]),
        "tls-auth-clients": "no",
    })
    url = f"rediss://127.0.0.1:{tls_port}/0?prefix=tls&ssl_ca_certs={files['ca']}"
    backend = open_backend(url)
    try:
        backend.create_flow(make_flow("f"))
        token = backend.claim("f", "r1", LEASE)
        backend.save_task(token, make_task("t"))
        assert list(backend.load_tasks("f")) == ["t"]
        assert backend.warnings() == []
    finally:
        backend.close()

    # Without the CA the server's certificate is refused, clearly.
    untrusted = open_backend(url.split("&")[0], retry_deadline=0.5)
    try:
        with pytest.raises(BackendUnavailable, match="certificate"):
            untrusted.load_flow("f")
    finally:
        untrusted.close()
