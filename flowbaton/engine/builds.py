"""Builds: which release of the service's code a replica runs, so a flow
never runs on older code than it already ran on.

During a rolling upgrade old and new replicas run side by side; during a
rollback old code comes back after new code started flows. A flow built by
a newer release may hold steps the older one does not know, so an older
replica that resumed it would finish it without them. Each replica may say
which build it runs (a PEP 440 version: ``--build``, ``FLOWBATON_BUILD``,
``connect(build=...)``, by default the version of the distribution that
provides its factories); each flow remembers the newest build that
submitted or claimed it (``FlowMeta.build``); a replica whose build is older
declines the flow, like one without its factory, until a replica new enough
takes it, or an operator lets older code take it on purpose
(``flowbaton retry FLOW_ID --allow-build 2.0``: ``FlowMeta.allowed_build``).

A replica with no build keeps the behaviour of releases before builds
existed: it runs whatever it can build, and is told what that costs.
``packaging`` compares versions (PEP 440 ordering has pre-, post- and dev
releases, epochs and local parts: not something to write again).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence

from packaging.version import InvalidVersion, Version

from ..backends.errors import CorruptRecord
from .errors import FactoryError
from .meta import FlowMeta

__all__ = [
    "AUTO_BUILD",
    "BuildTooOld",
    "UNSET_COST",
    "check_build",
    "checked_build",
    "default_build",
    "newest_build",
    "resolve_build",
    "version_of",
]

#: What a replica without a build gives up, said wherever it is shown unset.
UNSET_COST = ("build unset: this replica may resume flows that newer code already ran, and finish them "
              "without the steps the newer code added; set --build or FLOWBATON_BUILD")


#: ``build`` by default: the version of the distribution that provides the
#: allowed factories, when there is one (``default_build``)
AUTO_BUILD = "auto"


class BuildTooOld(FactoryError):
    """The flow already ran on a newer build than this replica's: declined
    (nothing written), it stays runnable for a replica new enough."""


def checked_build(text: str | None, what: str) -> str | None:
    """``text`` when it is a PEP 440 version (or None), else ``ValueError``
    naming ``what`` (an option, an environment variable); the CLI turns it
    into its one-line usage error."""
    if text is None:
        return None
    try:
        Version(text)
    except InvalidVersion:
        raise ValueError(f"{what}: {text[:60]!r} is not a PEP 440 version (e.g. 2.1 or 2.1.0rc1)") from None
    return text


def version_of(text: str | None) -> Version | None:
    """``text`` as a PEP 440 version, or None when unset or not one (for
    readers that show a stored build rather than act on it)."""
    try:
        return None if text is None else Version(text)
    except InvalidVersion:
        return None


def _stored(text: str, flow_id: str, key: str) -> Version:
    version = version_of(text)
    if version is None:
        raise CorruptRecord(f"flow {flow_id}", f"meta.{key} {text[:60]!r} is not a PEP 440 version")
    return version


def newest_build(stored: str | None, mine: str | None, flow_id: str) -> str | None:
    """The build a claim or submit by ``mine`` leaves on a flow that
    remembered ``stored``: the newer of the two (either may be unset)."""
    if stored is None or mine is None:
        return stored or mine
    return mine if Version(mine) > _stored(stored, flow_id, "build") else stored


def check_build(flow_id: str, meta: FlowMeta, mine: str | None) -> None:
    """``BuildTooOld`` when a replica of build ``mine`` must not run the flow:
    it already ran on a newer build, and no operator allowed ``mine`` or an
    older one (``allowed_build``). An unset build is never refused."""
    if mine is None or meta.build is None:
        return
    mine_v = Version(mine)
    if mine_v >= _stored(meta.build, flow_id, "build"):
        return
    if meta.allowed_build is not None and mine_v >= _stored(meta.allowed_build, flow_id, "allowed_build"):
        return
    raise BuildTooOld(f"flow last ran on build {meta.build}; this replica runs {mine} (a newer replica resumes "
                      f"it; to let older code take it on purpose: flowbaton retry {flow_id} --allow-build {mine})")


def resolve_build(build: str | None, allow: Sequence[str] | None) -> str | None:
    """The build a caller's ``build`` argument means: ``AUTO_BUILD`` is
    ``default_build(allow)``, None is unset, anything else must be a PEP 440
    version (``ValueError``). One rule for replicas, ``flowbaton.run`` and
    ``plan``."""
    return default_build(allow) if build == AUTO_BUILD else checked_build(build, "build")


def default_build(allow: Sequence[str] | None) -> str | None:
    """The version of the installed distribution that provides the top-level
    package of every allowed factory module, when there is exactly one; else
    None (factories from several distributions, or from a source tree)."""
    tops = {entry.split(":", 1)[0].split(".", 1)[0] for entry in allow or () if entry.strip(". ")}
    if not tops:
        return None
    owners = importlib.metadata.packages_distributions()
    dists = {dist for top in tops for dist in owners.get(top, ["?"])}
    if len(dists) != 1 or "?" in dists:
        return None
    try:
        version = importlib.metadata.version(dists.pop())
    except importlib.metadata.PackageNotFoundError:
        return None
    try:
        return checked_build(version, "distribution version")
    except ValueError:
        return None
