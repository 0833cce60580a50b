"""Builds as operators see them (``engine.builds`` has the rule): which live
replicas say no build, which flows only newer code than any live replica's
may run, and what an operator may allow when rolling back on purpose.

Pure functions over records; ``query``, ``check`` and ``actions`` read the
records and call them. A stored build that is no PEP 440 version is the
record's fault: for a flow, the reason says so (``CorruptRecord`` text)
instead of hiding the listing; a replica's counts as no build.
"""

from __future__ import annotations

from collections.abc import Sequence

from packaging.version import Version

from ..backends.errors import CorruptRecord
from ..backends.records import FlowDetail, ReplicaInfo
from ..engine.builds import UNSET_COST, BuildTooOld, check_build, checked_build, version_of
from ..engine.meta import FlowMeta

__all__ = ["unset_builds", "unset_warning", "build_stranded", "declines_build", "would_decline", "check_allowance"]


def unset_builds(replicas: Sequence[ReplicaInfo]) -> list[str]:
    """Ids of the live replicas that say no build (oldest first as given)."""
    return [r.replica_id for r in replicas if r.build is None]


def unset_warning(replicas: Sequence[ReplicaInfo]) -> str | None:
    """One line naming the live replicas without a build and what that
    costs, or None when every live replica says its build."""
    unset = unset_builds(replicas)
    if not unset:
        return None
    return f"{len(unset)} live replica(s) without a build ({', '.join(unset)}): {UNSET_COST}"


def build_stranded(flow: FlowDetail, replicas: Sequence[ReplicaInfo]) -> str | None:
    """Why no live replica's build may run the flow, or None when one may:
    the flow already ran on a build newer than every live replica's, and no
    operator allowed one of theirs. A replica with no build runs anything
    (as before builds existed), so any such replica makes the flow runnable."""
    meta = FlowMeta(flow.meta)
    if meta.build is None or not replicas:
        return None
    declined = [declines_build(flow, r.build) for r in replicas]
    if any(reason is None for reason in declined):
        return None
    if version_of(meta.build) is None or (meta.allowed_build is not None and version_of(meta.allowed_build) is None):
        return declined[0]  # the record's fault, named by CorruptRecord
    live = ", ".join(sorted({str(r.build) for r in replicas}, key=_order))
    if meta.allowed_build is None:
        return (f"no live replica runs build {meta.build} or newer (live: {live}); start one, or let older "
                f"code take it on purpose: flowbaton retry {flow.id} --allow-build VERSION")
    return (f"no live replica runs build {meta.allowed_build} or newer (live: {live}; the flow ran on "
            f"{meta.build}, an operator allowed {meta.allowed_build})")


def _order(text: str) -> tuple[int, Version | str]:
    version = version_of(text)
    return (0, version) if version is not None else (1, text)


def declines_build(flow: FlowDetail, build: str | None) -> str | None:
    """Why a replica of ``build`` would decline the flow for its build (the
    replica's own words, ``BuildTooOld``), or None if it would not. A flow
    whose stored build is unreadable is declined by every replica with a
    build: the reason names the record."""
    try:
        check_build(flow.id, FlowMeta(flow.meta), None if version_of(build) is None else build)
    except (BuildTooOld, CorruptRecord) as err:
        return str(err)
    return None


def would_decline(flow: FlowDetail, build: str | None) -> str | None:
    """What ``plan`` says when a replica of ``build`` would decline the flow
    for its build, or None when it would run it."""
    reason = declines_build(flow, build)
    stored = FlowMeta(flow.meta).build
    if reason is None or stored is None or version_of(stored) is None:
        return reason  # None, or the record's fault in CorruptRecord's words
    return (f"flow last ran on build {stored}; this code is build {build}; "
            f"retry --allow-build {build} lets it run")


def check_allowance(flow: FlowDetail, allowed: str) -> str | None:
    """Why ``allowed`` may not become the flow's ``allowed_build``, or None:
    it must be a PEP 440 version, no newer than the build the flow last ran
    on (allowing newer code than that changes nothing), and the flow must
    have a build at all."""
    try:
        checked_build(allowed, "--allow-build")
    except ValueError as err:
        return str(err)
    build = FlowMeta(flow.meta).build
    if build is None:
        return f"flow {flow.id} records no build: every replica may run it already"
    stored = version_of(build)
    if stored is None:
        return f"flow {flow.id}: its stored build {build[:60]!r} is not a PEP 440 version"
    if Version(allowed) > stored:
        return (f"--allow-build {allowed} is newer than build {build}, the newest flow {flow.id} ran on: "
                "only older code needs allowing")
    return None
