"""Restart in place: a replica restarted under its previous incarnation's id
(systemd, a container restarted in its pod) takes that incarnation's claims
over at once, instead of waiting for their lease, when it can prove the
incarnation dead.

The proof is the incarnation's presence record, read before this process
registers its own (which replaces it): the same replica id, host, boot and
pid namespace as ours, and a pid that no longer runs, or runs a process that
started at another moment (``/proc/<pid>/stat`` starttime: a pid is reused,
a start time within one boot is not). The pid namespace matters in
containers: a restarted container sees its own processes only, where its
first process is pid 1 again; a pid looked up there says nothing about a
process in another namespace, which may be alive (a pod force-deleted and
recreated on the same node while its old containers still drain). Anything
missing or different is no proof, and the claims wait for their lease as
before.

The takeover releases each claim of ours with the incarnation's own token
(``release`` is fenced: it drops the claim only if that exact claim id and
epoch are still current), so it can never drop a claim someone else took
meanwhile (the lease ran out during our start and another replica claimed
the flow), which a forced claim could. The released flows are then claimed
the usual way, by the claim loop that starts right after: the claim bumps
the epoch, counts the takeover (the flow record still names the dead owner:
the poison rule sees the crash) and respects the concurrency limit; a flow
this replica has no room for goes to any other replica. The dead
incarnation, should it be less dead than proven, is fenced: its token is
no longer current, so its writes and renewals fail.

A forged presence record (whoever can write the store) can at worst make
us take over claims held under *our own* replica id sooner than their lease:
only claims whose owner and claim id both name our id are touched.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from ..backends.base import Backend
from ..backends.errors import ClaimLost, FlowbatonError
from ..backends.records import ClaimInfo, ClaimToken, ReplicaInfo, owner_of
from .identity import process_start, replica_info

__all__ = ["Sighting", "Verdict", "look_up", "prove_dead", "restart_in_place"]

log = logging.getLogger("flowbaton.coordinator")

#: Linux never hands out a pid above this (``PID_MAX_LIMIT``, 2**22).
PID_MAX = 4_194_304


@dataclass(frozen=True)
class Sighting:
    """What this host says about a pid now: whether a process has it and,
    if one does, when that process started (None: cannot be read)."""

    running: bool
    start_ticks: int | None = None


@dataclass(frozen=True)
class Verdict:
    """Whether the previous incarnation is proven dead, and the reason, in
    words fit for the log."""

    dead: bool
    why: str


Look = Callable[[int], Sighting]


def look_up(pid: int) -> Sighting:
    """``pid`` as this host sees it. Signal 0 tests existence without
    sending anything, and also where ``/proc`` hides other users' processes
    (``hidepid``): a process we may not signal (EPERM) exists. Only called
    after the boot id matched, that is on Linux (on Windows ``os.kill``
    would end the process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return Sighting(running=False)
    except OSError:
        pass  # EPERM: it exists, and belongs to someone else
    return Sighting(running=True, start_ticks=process_start(pid))


def prove_dead(previous: ReplicaInfo | None, here: ReplicaInfo, look: Look = look_up) -> Verdict:
    """Decide, from ``previous`` (the stored presence record under our id,
    untrusted) and ``here`` (this process's own record), whether the
    incarnation ``previous`` describes is dead. ``look`` is the only I/O."""
    if previous is None:
        return Verdict(False, "no presence record under this id (the previous incarnation stopped "
                              "gracefully, or its record expired with its lease)")
    elsewhere = _elsewhere(previous, here)
    if elsewhere is not None:
        return Verdict(False, elsewhere)
    return _process_gone(previous, here, look)


def _elsewhere(previous: ReplicaInfo, here: ReplicaInfo) -> str | None:
    """Why the recorded process cannot be looked up from here, or None:
    another host, boot or pid namespace, or one we cannot tell."""
    if previous.host != here.host:
        return f"the record names host {_quoted(previous.host)}, this is {_quoted(here.host)}"
    for name, what in (("boot_id", "boot"), ("pid_namespace", "pid namespace")):
        theirs, ours = getattr(previous, name), getattr(here, name)
        if ours is None:
            return f"this system does not tell its {what}"
        if theirs is None:
            return f"the record has no {name} (written by an older version, or on another system)"
        if theirs != ours:
            return f"the record names another {what} ({_quoted(theirs)}, this is {_quoted(ours)})"
    return None


def _process_gone(previous: ReplicaInfo, here: ReplicaInfo, look: Look) -> Verdict:
    pid, started = previous.pid, previous.process_start
    if not 0 < pid <= PID_MAX:
        return Verdict(False, f"the record's pid {pid!r:.20} is no process id")
    if started is None:
        return Verdict(False, "the record has no process start time")
    if (pid, started) == (here.pid, here.process_start):
        return Verdict(False, "the record is this very process's (a replica started twice under one id?)")
    name = f"previous incarnation pid {pid} started at {_when(previous.started_at)} (tick {started})"
    seen = look(pid)
    if not seen.running:
        return Verdict(True, f"{name} is gone")
    if seen.start_ticks is None:
        return Verdict(False, f"pid {pid} runs and its start time cannot be read")
    if seen.start_ticks != started:
        return Verdict(True, f"{name} is gone: pid {pid} is another process now, started at tick {seen.start_ticks}")
    return Verdict(False, f"{name} still runs (stopped? hung?)")


def restart_in_place(backend: Backend, replica_id: str, look: Look = look_up) -> list[str]:
    """Before this replica registers: if the previous incarnation under
    ``replica_id`` is proven dead, release its claims at once; the flows
    released (the claim loop then claims them as usual). Logs its decision
    once; never fails the start (a backend error leaves the claims to their
    lease)."""
    try:
        verdict = prove_dead(_presence(backend, replica_id), replica_info(replica_id, None), look)
        if not verdict.dead:
            log.info("replica %s: no restart in place, claims left by an earlier process under this id "
                     "wait for their lease: %s", replica_id, verdict.why,
                     extra={"replica_id": replica_id, "event": "restart_in_place", "proof": None})
            return []
        return [claim.flow_id for claim in _ours(backend, replica_id) if _release(backend, claim, verdict)]
    except FlowbatonError as err:
        log.warning("replica %s: restart in place skipped, claims of an earlier process under this id wait "
                    "for their lease: %s", replica_id, err, extra={"replica_id": replica_id})
        return []


def _presence(backend: Backend, replica_id: str) -> ReplicaInfo | None:
    return next((info for info in backend.list_replicas() if info.replica_id == replica_id), None)


def _ours(backend: Backend, replica_id: str) -> list[ClaimInfo]:
    """Live claims held under ``replica_id``: by the owner the record names
    *and* by its claim id, so a claim record naming us as owner over
    someone else's claim id is not ours."""
    return [claim for claim in backend.list_claims()
            if claim.owner == replica_id and owner_of(claim.claim_id) == replica_id]


def _release(backend: Backend, claim: ClaimInfo, verdict: Verdict) -> bool:
    """Release ``claim`` with its own token; False if it is no longer
    current (released, or expired and taken by another replica)."""
    replica_id = claim.owner
    fields = {"replica_id": replica_id, "flow_id": claim.flow_id, "epoch": claim.epoch,
              "event": "restart_in_place", "proof": verdict.why}
    try:
        backend.release(ClaimToken(claim.flow_id, claim.claim_id, claim.epoch))
    except ClaimLost:
        log.info("replica %s: claim %s on flow %s of the previous incarnation is no longer current; left alone",
                 replica_id, claim.token, claim.flow_id, extra=fields)
        return False
    log.warning("replica %s: took flow %s over from its previous incarnation at once (claim %s released): %s",
                replica_id, claim.flow_id, claim.token, verdict.why, extra=fields)
    return True


def _quoted(text: str) -> str:
    """A stored string, shortened and quoted for a log line (it is untrusted)."""
    return repr(text[:80])


def _when(timestamp: float) -> str:
    try:
        return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return repr(timestamp)
