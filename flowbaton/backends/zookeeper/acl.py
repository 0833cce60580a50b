"""Who may touch flowbaton's znodes: the ACL we create with, and the check
of the ACLs already on the root and the folders.

ZooKeeper's default ACL is ``world:anyone:cdrwa``: anyone who can reach the
ensemble may read every argument and result, forge a task result, or delete
a claim. With credentials (digest auth), every znode we create carries one
entry, our digest identity with every permission, plus ``world:anyone:r``
only when ``?world_read=true`` asks for it.

What we create is ours; what was there before is not: a chroot or folder
created first by someone else keeps *their* ACL, and an ACL is not inherited
by children, so an open folder lets anyone create and delete records in it.
So at start (and in ``flowbaton check``, through ``warnings()``) the root
and every folder are read back and judged: a problem refuses the start
(``InsecureBackend``) unless ``?insecure_acl=warn``, which logs it loudly
and goes on. Without credentials nothing can be protected: that is one
problem, reported but never refused (a trusted network may be the choice).
Records below the folders are not read one by one (that would cost a
request per record at every start).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from kazoo.security import ACL, Id, Permissions, make_acl, make_digest_acl_credential

from ..base import SETTINGS_EVENT
from ..errors import InsecureBackend
from .settings import Settings

__all__ = ["NOT_READABLE", "Policy", "enforce"]

log = logging.getLogger(__name__)



class _NotReadable(tuple[ACL, ...]):
    """The type of ``NOT_READABLE``: getACL refused us (NoAuth), so the
    znode is not ours."""


NOT_READABLE: Sequence[ACL] = _NotReadable()

_CHANGE = Permissions.WRITE | Permissions.CREATE | Permissions.DELETE | Permissions.ADMIN
_NEEDED = Permissions.READ | Permissions.WRITE | Permissions.CREATE | Permissions.DELETE
_LETTERS = ((Permissions.CREATE, "c"), (Permissions.DELETE, "d"), (Permissions.READ, "r"),
            (Permissions.WRITE, "w"), (Permissions.ADMIN, "a"))
_WORLD = Id("world", "anyone")
_FIX = "fix the ACLs (zkCli.sh setAcl) or add ?insecure_acl=warn to the URL to run anyway"


def _perms(perms: int) -> str:
    return "".join(letter for bit, letter in _LETTERS if perms & bit)


def _who(ident: Id) -> str:
    """An ACL id fit to print: a digest id without its password hash."""
    if ident.scheme == "digest":
        return f"digest:{ident.id.partition(':')[0]}"
    return f"{ident.scheme}:{ident.id}"


@dataclass(frozen=True)
class Policy:
    """Our identity (None without credentials) and what the world may do."""

    identity: Id | None = field(repr=False)  # the digest: user name and password hash
    world_read: bool
    refuse: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        identity = None
        if settings.username is not None:
            identity = Id("digest", make_digest_acl_credential(settings.username, settings.password or ""))
        return cls(identity, settings.world_read, settings.insecure_acl == "refuse")

    def acl(self) -> list[ACL] | None:
        """The ACL of every znode we create; None: ZooKeeper's open ACL."""
        if self.identity is None:
            return None
        mine = [ACL(Permissions.ALL, self.identity)]
        return [*mine, make_acl("world", "anyone", read=True)] if self.world_read else mine

    # ------------------------------------------------------------ judging

    def problems(self, root: str, acls: dict[str, Sequence[ACL] | None]) -> list[str]:
        """One line per kind of problem, naming every path that has it;
        ``acls`` maps a path to its ACL, None (no such znode) or NOT_READABLE."""
        if self.identity is None:
            return [f"znodes under {root} are world-writable: no credentials in the URL, so anyone who "
                    "reaches ZooKeeper can read and change flows, results and claims "
                    "(give user:password in the URL or ?digest_file=)"]
        found: dict[str, list[str]] = {}
        for path, acl in acls.items():
            for issue in self._judge(acl):
                found.setdefault(issue, []).append(path)
        return [f"{', '.join(paths)}: {issue}" for issue, paths in found.items()]

    def _judge(self, acl: Sequence[ACL] | None) -> list[str]:
        if acl is None:
            return []
        if acl is NOT_READABLE:
            return ["ACL not readable with our credentials: created by someone else"]
        issues = [self._foreign(entry) for entry in acl if entry.id != self.identity]
        mine = 0  # what we may do, as ourselves or as anyone (an open ACL is reported above)
        for entry in acl:
            mine |= entry.perms if entry.id in (self.identity, _WORLD) else 0
        if mine & _NEEDED != _NEEDED:
            issues.append(f"not ours: we may only '{_perms(mine)}' (created by someone else)")
        return [issue for issue in issues if issue]

    def _foreign(self, entry: ACL) -> str:
        """The problem with an entry for someone else, or '' if there is none."""
        if entry.perms & _CHANGE:
            whom = "anyone" if entry.id == _WORLD else _who(entry.id)
            return f"{whom} may change it ('{_perms(entry.perms)}')"
        if entry.id == _WORLD and entry.perms & Permissions.READ and not self.world_read:
            return "anyone may read it (add ?world_read=true if that is intended)"
        return ""  # a named identity allowed to read: someone chose that


def enforce(policy: Policy, problems: list[str]) -> list[str]:
    """Refuse to start on ``problems`` (InsecureBackend), or log them
    loudly and return them (``warnings()`` then shows them to ``check``)."""
    if not problems:
        return []
    if policy.identity is not None and policy.refuse:
        raise InsecureBackend(f"unsafe ZooKeeper ACLs: {'; '.join(problems)}; {_FIX}")
    for problem in problems:
        log.warning("UNSAFE ZooKeeper ACL: %s", problem, extra={"event": SETTINGS_EVENT})
    return problems
