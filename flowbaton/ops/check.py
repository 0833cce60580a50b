"""``flowbaton check``: is this deployment safe to run flows on?

Problems (exit status 1): the backend does not answer; the backend warns
about its server (e.g. a Redis that may evict claim keys, or has
persistence off; ZooKeeper znodes others may change or read); the backend
refuses to open because of its access control (``InsecureBackend``).
Warnings (worth fixing, not a failed check): live replicas that say no
build (``engine.builds.UNSET_COST``). Notes (informational): the flowbaton
version here and on each live replica (mixed versions are normal during a
rolling deploy), how many replicas are live, claims held by no live replica.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..backends import open_backend
from ..backends.base import Backend
from ..backends.errors import BackendUnavailable, CorruptRecord, InsecureBackend
from ..backends.records import ReplicaInfo
from ..backends.redact import redact_url
from ..coordinator.identity import flowbaton_version
from .builds import unset_warning

__all__ = ["CheckReport", "check"]


@dataclass
class CheckReport:
    """What ``flowbaton check`` found about one backend (``backend``: its
    URL, secrets masked) from flowbaton ``version`` here. ``problems``
    fail the check (backend unreachable, unsafe server settings or access
    control, an unreadable replica record); ``warnings`` are worth fixing
    (live replicas that say no build); ``notes`` inform (versions here and
    on the live ``replicas``, claims held by no live replica)."""

    backend: str
    version: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    replicas: list[ReplicaInfo] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found: ``flowbaton check`` exits 0 (warnings do not count)."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """The report as JSON, for scripts (``flowbaton check`` prints text and
        has no ``--json``): backend, version, ok, problems, notes, warnings,
        and each live replica's id, version and build."""
        return {"backend": self.backend, "version": self.version, "ok": self.ok, "problems": self.problems,
                "notes": self.notes, "warnings": self.warnings,
                "replicas": [{"replica_id": r.replica_id, "version": r.version, "build": r.build}
                             for r in self.replicas]}


def check(target: str | Backend, **options: Any) -> CheckReport:
    """Check the backend ``target`` names (a URL, opened and closed here with
    the backend ``options`` given, or an open backend). Only a bad URL
    raises; everything else is reported."""
    url = redact_url(target if isinstance(target, str) else target.url)
    report = CheckReport(url, flowbaton_version())
    try:
        backend = open_backend(target, **options) if isinstance(target, str) else target
    except BackendUnavailable as err:
        report.problems.append(f"backend unreachable: {err}")
        return report
    except InsecureBackend as err:  # refused to open: others may change its records
        report.problems.append(f"unsafe access control: {err}")
        return report
    try:
        _inspect(backend, report)
    except BackendUnavailable as err:
        report.problems.append(f"backend unreachable: {err}")
    finally:
        if isinstance(target, str):
            backend.close()
    return report


def _inspect(backend: Backend, report: CheckReport) -> None:
    try:
        report.replicas = backend.list_replicas()
    except CorruptRecord as err:
        report.problems.append(f"unreadable replica record: {err}")
    claims = backend.list_claims()
    report.notes.append(f"backend reachable: {redact_url(backend.url)}")
    report.problems += [f"unsafe backend setting: {w}" for w in backend.warnings()]
    report.notes += _version_notes(report.version, report.replicas)
    unset = unset_warning(report.replicas)
    report.warnings += [unset] if unset else []
    live = {r.replica_id for r in report.replicas}
    orphans = sorted({c.owner for c in claims if c.owner not in live})
    if orphans:
        report.notes.append(f"{sum(c.owner not in live for c in claims)} claim(s) held by no live replica "
                            f"({', '.join(orphans)}): taken over when their lease or session ends")


def _version_notes(mine: str, replicas: list[ReplicaInfo]) -> list[str]:
    notes = [f"flowbaton {mine} here"]
    if not replicas:
        return [*notes, "no live replica: flows wait until one starts"]
    versions = Counter(r.version for r in replicas)
    listed = ", ".join(f"{v} ({n})" for v, n in sorted(versions.items()))
    notes.append(f"{len(replicas)} live replica(s) running flowbaton {listed}")
    if len(versions) > 1:
        notes.append("replicas run different flowbaton versions: normal during a rolling deploy, "
                     "not for long")
    return notes
