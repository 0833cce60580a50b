"""Backend URLs without their secrets, for every message, log line and listing.

``redact_url`` keeps what an operator needs to recognise a URL (scheme, user
name, hosts, path, harmless options) and masks the rest as ``***``: the
password in the user info, and the value of every query option whose name
says it is a secret (``password``, ``keyfile_password``, ``digest``,
``token``, ``api_key`` ...; paths such as ``ssl_keyfile`` stay).

It works on text, not on a parsed URL, because the URLs that most need it are
the malformed ones an error message is about (``redis://:pw@[::1/0``, a bad
port, a password with an unescaped ``/`` or ``@``): it never raises, and when
in doubt it masks more. Everything between ``://`` and the *last* ``@`` is
user info, whatever it contains; only a plain user name in front of the first
``:`` is kept.

``redact_text`` is the safety net for messages built by code that quotes a
raw URL: it replaces each secret the URL holds wherever it appears.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["MASK", "redact_url", "redact_text", "is_secret_option"]

MASK = "***"

# Option names whose value is a credential. "key" only at the end (api_key),
# so that file paths such as ssl_keyfile stay readable.
_SECRET_NAME = re.compile(r"pass|pwd|secret|token|digest|auth|credential|key$", re.IGNORECASE)
# key=value after ? or & (also inside a malformed URL: any ? or & counts).
_OPTION = re.compile(r"(?P<lead>[?&])(?P<key>[^=&?#]*)=(?P<value>[^&#]*)")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:/+")
# A user name we can show: nothing that suggests the span is more than user info.
_PLAIN_USER = re.compile(r"[^/?#\[\]@:]*")
# Schemes whose ``scheme:///path`` URLs name a local file: a "@" in the path
# is part of a file name.
_FILE_SCHEMES = ("sqlite", "memory")


def is_secret_option(name: str) -> bool:
    """True if a query option called ``name`` holds a credential."""
    return bool(_SECRET_NAME.search(unquote(name)))


def redact_url(url: str) -> str:
    """``url`` with its password and secret option values replaced by ``***``."""
    text = _OPTION.sub(_mask_option, str(url))
    span = _userinfo_span(text)
    if span is None:
        return text
    start, end = span
    return text[:start] + _mask_userinfo(text[start:end]) + text[end:]


def redact_text(text: str, url: str) -> str:
    """``text`` (say an error message quoting ``url``) with every secret of
    ``url`` masked, in the raw and in the percent-decoded form."""
    for secret in sorted(_secrets(str(url)), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def _mask_option(match: re.Match[str]) -> str:
    if not is_secret_option(match["key"]) or not match["value"]:
        return match[0]
    return f"{match['lead']}{match['key']}={MASK}"


def _userinfo_span(text: str) -> tuple[int, int] | None:
    """Where the user info is: after ``scheme://`` (or the start) up to the
    last ``@``; None if there is no ``@`` or the URL names a local file."""
    end = text.rfind("@")
    if end < 0:
        return None
    sep = text.find("://")
    if 0 <= sep < end:
        if text[:sep].lower() in _FILE_SCHEMES and text.startswith("/", sep + 3):
            return None
        start = sep + 3
    else:
        scheme = _SCHEME.match(text)
        start = scheme.end() if scheme and scheme.end() <= end else 0
    return start, end


def _mask_userinfo(userinfo: str) -> str:
    secret = _userinfo_secret(userinfo)
    if not secret:
        return userinfo
    if secret == userinfo:
        return MASK
    return f"{userinfo.partition(':')[0]}:{MASK}"


def _userinfo_secret(userinfo: str) -> str:
    """The part of the user info to hide: the password after a plain user
    name; all of it if the "user name" holds URL syntax (a malformed URL);
    nothing if it is a user name alone."""
    user, colon, password = userinfo.partition(":")
    if not _PLAIN_USER.fullmatch(user):
        return userinfo
    return password if colon else ""


def _secrets(url: str) -> set[str]:
    found = {m["value"] for m in _OPTION.finditer(url) if is_secret_option(m["key"])}
    span = _userinfo_span(url)
    if span is not None:
        found.add(_userinfo_secret(url[span[0]:span[1]]))
    found |= {unquote(secret) for secret in found}
    return {secret for secret in found if secret}
