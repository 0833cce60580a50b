"""What a Redis URL names: servers, database, credentials and options.

``redis://[[user]:password@]host:6379/0``, ``rediss://...`` (TLS),
``redis+sentinel://[[user]:password@]h1:26379,h2:26379/mymaster/0`` and
``redis+cluster://[[user]:password@]h1:7000,h2:7001/`` (a Redis Cluster: the
hosts are seed nodes, any of its nodes will do; ``rediss+cluster://`` with
TLS; a cluster has database 0 only). The credentials of a sentinel URL are
those of the Redis servers; the sentinels' own come from the
``sentinel_username``/``sentinel_password`` options.

Errors quote the URL through ``redact_url``: never a password. A password
holding ``/``, ``?``, ``#`` or ``@`` must be percent-encoded; left raw, part
of it would be read as hosts, path or options, so such a URL is refused
rather than guessed at (and the refusal repeats none of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from .. import limits
from ..errors import BadBackendURL
from ..options import Option, parse_options
from ..redact import redact_url
from .keys import check_prefix
from .layout import AUTO, check_shards

__all__ = ["OPTIONS", "Target", "parse_url", "CLUSTER_SCHEMES", "TLS_SCHEMES"]

OPTIONS: dict[str, Option] = {
    "prefix": Option(str, "fb", "prefix of every key: the namespace"),
    "shards": Option(int, AUTO, "hash-tagged shards of a new namespace, stored once (-1: 16 on a cluster, "
                     "0, the classic layout, on one server); an existing namespace keeps its own"),
    "max_record_bytes": limits.option(limits.DEFAULT_MAX_RECORD_BYTES),
    "socket_timeout": Option(float, 5.0, "seconds to wait for one reply"),
    "socket_connect_timeout": Option(float, 5.0, "seconds to wait for a connection"),
    "retry_deadline": Option(
        float, 10.0, "seconds to retry transient errors before BackendUnavailable"
    ),
    "ssl_ca_certs": Option(str, "", "CA bundle for rediss://"),
    "ssl_certfile": Option(str, "", "client certificate for rediss://"),
    "ssl_keyfile": Option(str, "", "client key for rediss://"),
    "ssl_cert_reqs": Option(
        str, "required", "server certificate check", ("none", "optional", "required")
    ),
    "ssl_check_hostname": Option(
        bool, True, "the server certificate must name the host in the URL (off: any host the CA signed)"
    ),
    "sentinel_username": Option(str, "", "ACL user of the sentinels"),
    "sentinel_password": Option(str, "", "password of the sentinels"),
}

_DEFAULT_PORT = {"redis": 6379, "rediss": 6379, "redis+sentinel": 26379, "redis+cluster": 6379,
                 "rediss+cluster": 6379}
#: Schemes of a Redis Cluster, and of TLS connections.
CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
TLS_SCHEMES = frozenset({"rediss", "rediss+cluster"})


@dataclass(frozen=True)
class Target:
    scheme: str
    hosts: tuple[tuple[str, int], ...]
    service: str | None  # sentinel master name
    db: int
    username: str | None
    # Out of repr (a traceback with locals, a debugger): the password, and
    # the options, which hold sentinel_password.
    password: str | None = field(repr=False)
    options: dict[str, Any] = field(repr=False)

    @property
    def cluster(self) -> bool:
        return self.scheme in CLUSTER_SCHEMES

    @property
    def tls(self) -> bool:
        return self.scheme in TLS_SCHEMES

    def describe(self) -> str:
        """The URL without credentials, for messages and logs."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.hosts)
        service = f"/{self.service}" if self.service else ""
        return f"{self.scheme}://{hosts}{service}/{self.db}"


def parse_url(url: str, overrides: dict[str, Any] | None = None) -> Target:
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as err:  # e.g. an unbalanced [ of an IPv6 address
        raise BadBackendURL(f"malformed URL {shown!r}: {err}") from None
    if parts.scheme not in _DEFAULT_PORT:
        raise BadBackendURL(f"not a Redis URL: {shown!r}")
    if "@" in parts.path + parts.query + parts.fragment:
        raise BadBackendURL(
            f"{shown!r}: '@' after the host list; percent-encode '/', '?', '#' and '@' "
            "in a password (and '@' in an option)"
        )
    options = parse_options(parts.query, OPTIONS, overrides)
    check_prefix(options["prefix"])
    check_shards(options["shards"])
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo)
    hosts = _hosts(hostlist, _DEFAULT_PORT[parts.scheme], shown)
    segments = [s for s in parts.path.split("/") if s]
    service = None
    if parts.scheme == "redis+sentinel":
        if not segments:
            raise BadBackendURL(f"{shown!r}: name the sentinel service, e.g. /mymaster/0")
        service, segments = unquote(segments[0]), segments[1:]
    db = _db(segments, shown)
    if parts.scheme in CLUSTER_SCHEMES and db != 0:
        raise BadBackendURL(f"{shown!r}: a Redis Cluster has database 0 only; use ?prefix= to share it")
    return Target(parts.scheme, hosts, service, db, username, password, options)


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, sep, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if sep else None)


def _hosts(hostlist: str, default_port: int, url: str) -> tuple[tuple[str, int], ...]:
    hosts = tuple(_host(item, default_port, url) for item in hostlist.split(",") if item)
    if not hosts:
        raise BadBackendURL(f"{url!r} names no host")
    return hosts


def _host(item: str, default_port: int, url: str) -> tuple[str, int]:
    if item.startswith("["):  # [ipv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    else:
        host, port_text = item, ""
    try:
        return host, int(port_text) if port_text else default_port
    except ValueError:
        raise BadBackendURL(f"{url!r}: bad port in {item!r}") from None


def _db(segments: list[str], url: str) -> int:
    if len(segments) > 1:
        raise BadBackendURL(f"{url!r}: unexpected path {'/'.join(segments)!r}")
    try:
        return int(segments[0]) if segments else 0
    except ValueError:
        raise BadBackendURL(f"{url!r}: database must be a number, not {segments[0]!r}") from None
