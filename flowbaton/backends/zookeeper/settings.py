"""``zookeeper://[user:pass@]h1:2181,h2:2181/chroot?options`` -> typed settings.

Credentials (digest auth) come from the URL's user info or from
``?digest_file=`` (a file holding ``user:password``), never both. Secret
here: the URL's password, the contents of ``digest_file`` and
``keyfile_password``. With credentials every znode is creator-only
(``?world_read=true`` adds read for anyone); see ``acl.py`` for the check
of existing ACLs and ``?insecure_acl=warn``.

TLS: ``use_ssl=true`` with ``ca`` (PEM bundle; else the system's),
``certfile``/``keyfile``/``keyfile_password`` for a client certificate.
The certificate *and its host name* are checked by default (the name in
the URL's host list must be in the certificate); ``check_hostname=false``
or ``verify_certs=false`` turn that off by name. The server side needs
``secureClientPort`` and the Netty connection factory.

Digest auth sends ``user:password`` to the server in clear text: use it
over TLS wherever the network is not trusted. SASL (Kerberos/GSSAPI, SASL
DIGEST-MD5) is not exposed as URL options: kazoo supports it through
``sasl_options`` (with the ``pure-sasl`` package), but the ACL check here
knows digest identities only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import limits
from ..errors import BadBackendURL
from ..options import Option, parse_options
from ..redact import redact_url
from .layout import normalize_chroot

__all__ = ["Settings", "OPTIONS", "DEFAULT_SESSION_TIMEOUT"]

DEFAULT_SESSION_TIMEOUT = 10.0

OPTIONS: dict[str, Option] = {
    "session_timeout": Option(
        float, None, "seconds; how long after a replica dies its claims vanish (server clamps)"
    ),
    "lease": Option(float, None, "seconds; sets the session timeout when session_timeout is not given"),
    "connect_timeout": Option(float, 5.0, "seconds to wait for the first session"),
    "operation_timeout": Option(float, 5.0, "seconds one request may take before it is retried"),
    "retry_deadline": Option(float, 10.0, "seconds transient errors are retried, then BackendUnavailable"),
    "reconnect_delay": Option(
        float, None, "most seconds between reconnect attempts, ±40 % jitter (default: session timeout / 3, max 1)"
    ),
    "max_record_bytes": limits.option(limits.ZOOKEEPER_MAX_RECORD_BYTES),
    "digest_file": Option(str, None, "file holding user:password for digest auth (instead of the URL's)"),
    "world_read": Option(bool, False, "with credentials, let anyone read the znodes flowbaton creates"),
    "insecure_acl": Option(
        str, "refuse", "ACLs that let others change (or read) our znodes: refuse to start, or warn and go on",
        choices=("refuse", "warn"),
    ),
    "use_ssl": Option(bool, False, "TLS to the servers"),
    "certfile": Option(str, None, "client certificate (PEM) for TLS"),
    "keyfile": Option(str, None, "client key (PEM) for TLS"),
    "keyfile_password": Option(str, None, "password of the TLS key"),
    "ca": Option(str, None, "CA bundle (PEM) to verify the servers"),
    "verify_certs": Option(bool, True, "verify the servers' certificates"),
    "check_hostname": Option(
        bool, None, "check that a server's certificate names the host dialled (default: when verify_certs)"
    ),
}


@dataclass(frozen=True)
class Settings:
    hosts: str
    chroot: str
    username: str | None
    password: str | None = field(repr=False)  # a traceback with locals, a debugger: never the secret
    session_timeout: float
    connect_timeout: float
    operation_timeout: float
    retry_deadline: float
    reconnect_delay: float
    max_record_bytes: int
    tls: dict[str, Any] = field(repr=False)  # keyfile_password
    world_read: bool = False
    insecure_acl: str = "refuse"

    @classmethod
    def from_url(cls, url: str, overrides: dict[str, object]) -> Settings:
        parts = urlsplit(url)
        if parts.scheme != "zookeeper":
            raise BadBackendURL(f"not a zookeeper:// URL: {redact_url(url)!r}")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        if not hosts:
            raise BadBackendURL(f"zookeeper:// URL names no server: {redact_url(url)!r}")
        opts = parse_options(parts.query, OPTIONS, overrides)
        username, password = _credentials(userinfo, opts["digest_file"])
        return cls(
            hosts=hosts,
            chroot=normalize_chroot(parts.path),
            username=username,
            password=password,
            session_timeout=(session_timeout := _session_timeout(opts)),
            connect_timeout=_positive(opts, "connect_timeout"),
            operation_timeout=_positive(opts, "operation_timeout"),
            retry_deadline=_positive(opts, "retry_deadline"),
            reconnect_delay=_reconnect_delay(opts, session_timeout),
            max_record_bytes=limits.checked_limit(opts["max_record_bytes"]),
            tls=_tls(opts),
            world_read=bool(opts["world_read"]),
            insecure_acl=str(opts["insecure_acl"]),
        )


def _credentials(userinfo: str, digest_file: str | None) -> tuple[str | None, str | None]:
    if digest_file is not None:
        if userinfo:
            raise BadBackendURL("zookeeper:// URL gives credentials twice: user:password and digest_file")
        return _split_digest(_read_digest_file(digest_file), quoted=False)
    if not userinfo:
        return None, None
    return _split_digest(userinfo, quoted=True)


def _split_digest(text: str, *, quoted: bool) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not user or not sep:
        raise BadBackendURL("zookeeper:// credentials must be user:password (digest auth)")
    return (unquote(user), unquote(password)) if quoted else (user, password)


def _read_digest_file(name: str) -> str:
    """The first line of ``name``; errors name the file, never its content."""
    try:
        lines = Path(name).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise BadBackendURL(f"zookeeper digest_file {name!r} cannot be read: {err.__class__.__name__}") from None
    if not lines:
        raise BadBackendURL(f"zookeeper digest_file {name!r} is empty (expected user:password)")
    return lines[0].strip()


def _positive(opts: dict[str, Any], name: str) -> float:
    value = float(opts[name])
    if value <= 0:
        raise BadBackendURL(f"option {name!r} must be > 0, got {value}")
    return value


def _session_timeout(opts: dict[str, Any]) -> float:
    """``session_timeout`` wins; else the coordinator's ``lease``; else 10 s."""
    for name in ("session_timeout", "lease"):
        if opts[name] is not None:
            return _positive(opts, name)
    return DEFAULT_SESSION_TIMEOUT


def _reconnect_delay(opts: dict[str, Any], session_timeout: float) -> float:
    """kazoo's own reconnect backoff grows to 60 s: after a long outage a
    replica would wait that long to notice the servers are back, and its
    flows (or the claims it must give up) would stand still meanwhile. A
    third of the session timeout leaves two attempts inside a session, so a
    healthy replica keeps its session across a short blip."""
    if opts["reconnect_delay"] is not None:
        return _positive(opts, "reconnect_delay")
    return min(1.0, session_timeout / 3)


def _tls(opts: dict[str, Any]) -> dict[str, Any]:
    if not opts["use_ssl"]:
        return {}
    names = ("certfile", "keyfile", "keyfile_password", "ca", "verify_certs")
    return {"use_ssl": True, **{name: opts[name] for name in names}, "check_hostname": _check_hostname(opts)}


def _check_hostname(opts: dict[str, Any]) -> bool:
    """On unless asked off by name: a certificate any CA signed for *another*
    host would otherwise do. Without ``verify_certs`` there is no certificate
    to check a name in, so the default follows it; asking for both is an error
    here rather than a ValueError inside kazoo's connection loop."""
    if opts["check_hostname"] is None:
        return bool(opts["verify_certs"])
    if opts["check_hostname"] and not opts["verify_certs"]:
        raise BadBackendURL("option 'check_hostname': needs verify_certs=true (no certificate, no name to check)")
    return bool(opts["check_hostname"])
