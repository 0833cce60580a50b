"""The claims one session holds, and which of them a standing watch vouches for.

Why: on ZooKeeper the session is the lease. A claim znode is ephemeral to
our session, so while the session lives it stays ours unless someone
deletes or replaces it (a release, an operator's forced claim). A data
watch on the claim znode reports exactly that, so renewing a replica's
claims needs no per-claim request: one reply on the session proves it
alive, and every claim whose watch has not fired is still current.

A watch *vouches* for a token once the read that set it answered with this
very claim (claim id, epoch, and our session as the ephemeral owner) and
the watch has not fired since. Anything else is *unsure* and is read again
(one batched read for all of them): a claim just granted whose watch read
is still in flight, one whose watch fired (deleted, changed, or kazoo
dropping every watch when the connection is lost), one of an older
session, a token this object never granted. Dropping an entry is always
safe: it costs one read, never a wrong answer.

kazoo watches are one-shot and cannot be taken back. Each watch request
carries an arm number; an event or answer for an older arm, or for a flow
no longer tracked, is ignored, so a released claim's watch firing later
does nothing. No I/O here: the driver sends, this module decides.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..errors import CorruptRecord
from ..records import ClaimToken
from .client import Node, Unanswered
from .codec import parse_claim

__all__ = ["HeldClaims", "Reply", "names_token"]


class Reply(Protocol):
    """The answer to a watch's read, arriving in the background."""

    @property
    def ready(self) -> bool: ...

    def node(self) -> Node | None:
        """The znode read (None: there is none); ``Unanswered`` if the read
        failed (then no watch stands either)."""


def names_token(token: ClaimToken, node: Node | None, session: int) -> bool:
    """True if ``node``, a claim znode as read, is ``token``'s claim held by
    ``session``. An unreadable record is nobody's (the contract)."""
    if node is None or session == 0 or node.stat.ephemeral_owner != session:
        return False
    try:
        info = parse_claim(token.flow_id, node.data, f"claim of flow {token.flow_id!r}")
    except CorruptRecord:
        return False
    return (info.claim_id, info.epoch) == (token.claim_id, token.epoch)


@dataclass
class _Held:
    token: ClaimToken
    session: int  # the session that took the claim: its ephemerals die with it
    arm: int = 0  # the watch asked for last; events of older ones are ignored
    reply: Reply | None = None  # that watch's read, until judged
    vouched: bool = False  # the read saw this claim and the watch has not fired
    fired: bool = False  # the watch fired (or failed): a read and a new watch are due


class HeldClaims:
    """Tokens granted on this session, each with its watch's word on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, _Held] = {}  # flow id -> our latest token for it
        self._arms = itertools.count(1)

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    # ----------------------------------------------------- granting, arming

    def track(self, token: ClaimToken, session: int) -> int:
        """Start tracking a token granted (or found current) on ``session``;
        the arm number its watch must carry."""
        with self._lock:
            arm = next(self._arms)
            self._held[token.flow_id] = _Held(token, session, arm)
        return arm

    def armed(self, flow_id: str, arm: int, reply: Reply) -> None:
        """The watch ``arm`` was sent; ``reply`` answers its read."""
        with self._lock:
            held = self._held.get(flow_id)
            if held is not None and held.arm == arm and not held.fired:
                held.reply = reply

    def fired(self, flow_id: str, arm: int) -> None:
        """The watch ``arm`` fired (kazoo's callback thread), or could not be
        sent: its token is unsure until read again."""
        with self._lock:
            held = self._held.get(flow_id)
            if held is not None and held.arm == arm:
                held.fired, held.vouched, held.reply = True, False, None

    def doubt_all(self) -> None:
        """The connection was lost: watches may be gone (kazoo drops them)."""
        with self._lock:
            for held in self._held.values():
                held.fired, held.vouched, held.reply = True, False, None

    def forget(self, token: ClaimToken) -> None:
        """``token`` is released or known lost; a newer one of ours stays."""
        with self._lock:
            held = self._held.get(token.flow_id)
            if held is not None and held.token == token:
                del self._held[token.flow_id]

    def clear(self) -> None:
        """The session is gone, and every claim with it."""
        with self._lock:
            self._held.clear()

    # ------------------------------------------------------------- judging

    def unsure(self, tokens: Iterable[ClaimToken], session: int) -> list[ClaimToken]:
        """Those of ``tokens`` no standing watch on ``session`` vouches for."""
        with self._lock:
            return [token for token in tokens if not self._vouches(token, session)]

    def vouches(self, token: ClaimToken, session: int) -> bool:
        with self._lock:
            return self._vouches(token, session)

    def _vouches(self, token: ClaimToken, session: int) -> bool:
        held = self._held.get(token.flow_id)
        if held is None or held.token != token or held.session != session:
            return False
        if held.reply is not None and held.reply.ready:
            self._judge(held)
        return held.vouched and not held.fired

    @staticmethod
    def _judge(held: _Held) -> None:
        assert held.reply is not None
        try:
            node = held.reply.node()
        except Unanswered:
            node = None
        held.reply = None
        held.vouched = names_token(held.token, node, held.session)
        held.fired = not held.vouched

    def confirm(self, token: ClaimToken, session: int) -> int | None:
        """A read on ``session`` just found ``token`` current. The arm number
        of the watch to send if none stands or is on its way, else None."""
        with self._lock:
            held = self._held.get(token.flow_id)
            if held is not None and held.token == token and held.session == session and not held.fired:
                return None  # its watch is standing or answering
        return self.track(token, session)

