"""Taking claims: one flow, or many in one ``multi``, and a watch on each.

A claim is three ops in one ``multi`` (see the driver's docstring on
fencing): bump the epoch znode's version, create the ephemeral claim znode
and the ephemeral holder marker. Many claims are many such triples in one
``multi`` of up to ``CLAIM_BATCH`` flows, after one batched read of every
claim and epoch znode: a replica taking over 1,000 orphans waits for
~20 multis and ~4 reads, not 2,000 round trips.

A ``multi`` is all or nothing, so one flow claimed by someone else between
the read and the ``multi`` fails its whole batch: the batch is read again
(which finds every winner at once, where dropping one loser per failed
``multi`` could cost a ``multi`` per flow when replicas race for the same
orphans), and after ``CLAIM_ROUNDS`` lost rounds its flows are claimed one
by one. An attempt whose reply was lost is resolved by reading back: claim
ids are fixed per call, so a claim that landed is recognised as ours and
never taken twice.

Every claim taken gets a data watch on its claim znode, sent and not
awaited (``held.py``): that watch, not a per-claim read, is what keeps
``renew_claims`` to one request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from ..errors import ClaimHeld, FlowNotFound
from ..limits import batches
from ..records import ClaimToken
from .client import Again, Node, Op, Session
from .codec import claim_holder, claim_record, parse_claim
from .held import HeldClaims
from .layout import Layout

__all__ = ["CLAIM_BATCH", "CLAIM_ROUNDS", "ClaimStates", "ClaimTaker", "new_claim_id"]

#: Flows one ``multi`` claims at most: a raced flow costs its whole batch a
#: re-read and a new ``multi``, so batches stay modest.
CLAIM_BATCH = 50
#: ``multi``s a batch may lose to races before its flows go one by one.
CLAIM_ROUNDS = 3
# Bytes of one claim in a multi besides its paths and claim id: the claim
# record (owner, epoch, time, keys) and three ops' type, version, flags, ACL.
_CLAIM_BYTES = 256 + 3 * 256

ClaimStates = dict[str, tuple[Node | None, Node | None]]  # flow -> (claim znode, epoch znode)
Granted = list[tuple[ClaimToken, list[Op]]]


def new_claim_id(owner: str) -> str:
    return f"{owner}#{uuid.uuid4().hex[:12]}"


class ClaimTaker:
    """Claims taken on one session, each watched once taken."""

    def __init__(
        self,
        zk: Session,
        paths: Layout,
        held: HeldClaims,
        url: str,
        where: Callable[[str, str], str],
        fresh: Callable[[str], None],
    ) -> None:
        self._zk = zk
        self._paths = paths
        self._held = held
        self._url = url  # names the store in FlowNotFound
        self._where = where  # names a record for CorruptRecord
        self._fresh = fresh  # forget what we cached of a flow we just claimed

    # ---------------------------------------------------------- one flow

    def one(self, flow_id: str, claim_id: str, owner: str, force: bool) -> ClaimToken:
        """One attempt at claiming ``flow_id`` as ``claim_id``; ``Again``
        if it raced. ``ClaimHeld``, ``FlowNotFound`` as ``Backend.claim``."""
        paths = self._paths
        held, epoch = self._zk.get_many([paths.claim(flow_id), paths.epoch(flow_id)])
        holder = claim_holder(held.data) if held is not None else None
        if held is not None and holder == claim_id:
            # A connection loss hid the outcome of our previous attempt: it
            # landed. Resolved by reading back, never by claiming twice.
            return self._landed(flow_id, held)
        if held is not None and not force:
            raise ClaimHeld(f"flow {flow_id} is claimed by {holder or 'an unreadable claim'}")
        if epoch is None:
            raise FlowNotFound(f"no flow {flow_id!r} in {self._url}")
        token, ops = self._ops(flow_id, claim_id, owner, epoch)
        session = self._zk.session_id  # before the multi: never a newer session than its own
        outcome = self._zk.commit((self._evict(flow_id) if held is not None else []) + ops)
        if not outcome.ok:
            raise Again(f"claim of {flow_id} raced with another ({outcome.error})")
        self._granted([token], session)
        return token

    def _evict(self, flow_id: str) -> list[Op]:
        """Ops deleting the live claim and its holder marker (force claim);
        the epoch bump in the same multi fences the evicted holder."""
        markers = self._zk.children_many([self._paths.epoch(flow_id)])[0] or []
        ops = [Op("delete", f"{self._paths.epoch(flow_id)}/{name}") for name in markers]
        return [Op("delete", self._paths.claim(flow_id)), *ops]

    # -------------------------------------------------------- many flows

    def states(self, flow_ids: Sequence[str]) -> ClaimStates:
        """Claim and epoch znodes of every flow, in one batched read."""
        paths = self._paths
        nodes = self._zk.get_many([p for f in flow_ids for p in (paths.claim(f), paths.epoch(f))])
        return {f: (nodes[2 * i], nodes[2 * i + 1]) for i, f in enumerate(flow_ids)}

    def batches(self, flow_ids: list[str], claim_ids: dict[str, str], limit: int) -> list[list[str]]:
        """Batches of at most ``CLAIM_BATCH`` flows whose ``multi`` stays
        under ``limit`` bytes (the server drops a request over its
        jute.maxbuffer; ids are free-form, so paths can be long)."""
        sizes = [3 * len(self._paths.holder(f, claim_ids[f])) + _CLAIM_BYTES for f in flow_ids]
        return [
            part
            for i in range(0, len(flow_ids), CLAIM_BATCH)
            for part in batches(flow_ids[i : i + CLAIM_BATCH], sizes[i : i + CLAIM_BATCH], limit)
        ]

    def batch(
        self, batch: list[str], claim_ids: dict[str, str], owner: str, states: ClaimStates | None
    ) -> dict[str, ClaimToken]:
        """One attempt at claiming every free flow of ``batch`` (``states``:
        what was read of them, None to read again); flow -> token granted."""
        for _ in range(CLAIM_ROUNDS):
            states = states or self.states(batch)
            mine, free = self._sort(batch, claim_ids, owner, states)
            if not free:
                return mine
            session = self._zk.session_id
            if self._zk.commit([op for _, ops in free for op in ops]).ok:
                self._granted([token for token, _ in free], session)
                return mine | {token.flow_id: token for token, _ in free}
            states = None  # a flow was claimed meanwhile: read the batch again
        # Kept losing races: each flow on its own, so one loser costs one multi.
        return {token.flow_id: token for token in self._each(batch, claim_ids, owner)}

    def _sort(
        self, batch: list[str], claim_ids: dict[str, str], owner: str, states: ClaimStates
    ) -> tuple[dict[str, ClaimToken], Granted]:
        """Ours already (an ambiguous attempt landed), and the free flows
        with the ops that claim them; held and missing flows are left out."""
        mine: dict[str, ClaimToken] = {}
        free: Granted = []
        for flow_id in batch:
            held, epoch = states[flow_id]
            if held is not None and claim_holder(held.data) == claim_ids[flow_id]:
                mine[flow_id] = self._landed(flow_id, held)
            elif held is None and epoch is not None:
                free.append(self._ops(flow_id, claim_ids[flow_id], owner, epoch))
        return mine, free

    def _each(self, batch: list[str], claim_ids: dict[str, str], owner: str) -> list[ClaimToken]:
        tokens = []
        for flow_id in batch:
            try:
                tokens.append(self.one(flow_id, claim_ids[flow_id], owner, False))
            except (ClaimHeld, FlowNotFound):
                continue
        return tokens

    # ------------------------------------------------------------ shared

    def _ops(self, flow_id: str, claim_id: str, owner: str, epoch: Node) -> tuple[ClaimToken, list[Op]]:
        """The token of a new claim on a flow whose epoch znode is ``epoch``,
        and the ops that take it."""
        paths = self._paths
        token = ClaimToken(flow_id, claim_id, epoch.stat.version + 1)
        return token, [
            Op("set", paths.epoch(flow_id), claim_id.encode(), version=epoch.stat.version),
            Op("create", paths.claim(flow_id), claim_record(claim_id, token.epoch, owner), ephemeral=True),
            Op("create", paths.holder(flow_id, claim_id), ephemeral=True),
        ]

    def _landed(self, flow_id: str, held: Node) -> ClaimToken:
        """The token of our own claim that an ambiguous attempt did take."""
        info = parse_claim(flow_id, held.data, self._where(f"claim of flow {flow_id!r}", self._paths.claim(flow_id)))
        token = ClaimToken(flow_id, info.claim_id, info.epoch)
        self._granted([token], held.stat.ephemeral_owner)
        return token

    def _granted(self, tokens: Sequence[ClaimToken], session: int) -> None:
        """Claims just taken on ``session``: fresh task caches, and a watch
        on each claim znode (sent, not awaited) that will vouch for it."""
        for token in tokens:
            self._fresh(token.flow_id)
            self.watch(token, self._held.track(token, session))

    def watch(self, token: ClaimToken, arm: int) -> None:
        """Send the watch ``arm`` on ``token``'s claim znode (``held.py``)."""
        flow_id = token.flow_id
        reply = self._zk.watch(self._paths.claim(flow_id), lambda: self._held.fired(flow_id, arm))
        self._held.armed(flow_id, arm, reply)
