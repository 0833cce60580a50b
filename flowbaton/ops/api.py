"""``flowbaton.ops``: the operator API as one object over one backend.

::

    import flowbaton.ops

    with flowbaton.ops.connect("redis://redis:6379/0") as ops:
        day_ago = time.time() - 86400
        held = ops.flows(state="HELD", factory="billing.*", before=day_ago)
        report = ops.bulk_cancel(held)
        print(report.to_json())

Every method returns a typed record whose ``to_json()`` is exactly what
the CLI prints with ``--json`` (the CLI calls these same functions). Actions
write the way a replica does, under a fenced claim of their own
(``actions``); a refusal (``OpRefused``) changes nothing. Flow ids may be
shortened to a unique prefix of 6 characters or more (``resolve``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..backends import open_backend
from ..backends.base import Backend
from ..engine.builds import AUTO_BUILD
from . import actions, bulk, handover, query, rollback
from . import delete as deleting
from .check import CheckReport, check
from .documents import ClaimRow, FlowPage, FlowPlan, FlowRow, FlowShow, ReplicasReport
from .ids import resolve_flow_id
from .timeline import Timeline, timeline

__all__ = ["Ops", "connect"]


class Ops:
    """The operator API over ``backend``; ``who`` names the operator in the
    flows' operator history and in handover requests (default: user, host
    and process: ``actions.operator_id``)."""

    def __init__(self, backend: Backend, *, who: str | None = None, owns_backend: bool = False) -> None:
        self.backend = backend
        self.who = who or actions.operator_id()
        self._owns_backend = owns_backend

    # ---------------------------------------------------------------- reads

    def resolve(self, flow_id: str) -> str:
        """The full id of a stored flow from its id or a unique prefix."""
        return resolve_flow_id(self.backend, flow_id)

    def flows(self, *, state: str | None = None, owner: str | None = None, factory: str | None = None,
              name: str | None = None, since: float | None = None, before: float | None = None,
              stranded: bool = False, limit: int | None = None, offset: int = 0) -> list[FlowRow]:
        """Stored flows, oldest first, filtered and paged (``query.flows``)."""
        return query.flows(self.backend, state=state, owner=owner, factory=factory, name=name, since=since,
                           before=before, stranded=stranded, limit=limit, offset=offset)

    def flows_page(self, *, limit: int = 50, after: str | None = None, state: str | None = None,
                   owner: str | None = None, factory: str | None = None, name: str | None = None,
                   since: float | None = None, before: float | None = None) -> FlowPage:
        """One page of ``flows`` and the cursor of the next (``page.next``)::

            page = ops.flows_page(limit=50)
            while page.next:
                page = ops.flows_page(limit=50, after=page.next)
        """
        return query.flows_page(self.backend, limit=limit, after=after, state=state, owner=owner,
                                factory=factory, name=name, since=since, before=before)

    def stranded(self, **filters: Any) -> list[FlowRow]:
        """Runnable flows no live replica will run, each with why."""
        return self.flows(stranded=True, **filters)

    def show(self, flow_id: str) -> FlowShow:
        return query.show(self.backend, self.resolve(flow_id))

    def timeline(self, flow_id: str) -> Timeline:
        """Who ran which attempt of each task when, the claims and takeovers
        (``ops.timeline``; ``ops.timeline_svg.to_svg`` draws it)."""
        return timeline(self.show(flow_id))

    def claims(self, *, owner: str | None = None, stale: bool = False) -> list[ClaimRow]:
        return query.claims(self.backend, owner=owner, stale=stale)

    def replicas(self) -> ReplicasReport:
        return query.replicas(self.backend)

    def plan(self, flow_id: str, allow: Sequence[str], build: str | None = AUTO_BUILD) -> FlowPlan:
        """What resuming the flow with the code importable here would do;
        imports only factories under ``allow``."""
        return query.plan(self.backend, self.resolve(flow_id), allow, build)

    def check(self) -> CheckReport:
        return check(self.backend)

    # -------------------------------------------------------------- actions

    def release(self, flow_id: str, *, force: bool = False) -> handover.HandoverResult | actions.ActionResult:
        """Ask the owner to hand the flow back after its running tasks
        (nothing runs twice); ``force``: fence it now (the task it runs may
        run twice)."""
        flow_id = self.resolve(flow_id)
        if force:
            return actions.release(self.backend, flow_id, who=self.who)
        return handover.request_release(self.backend, flow_id, who=self.who)

    def drain(self, replica_id: str) -> handover.HandoverResult:
        return handover.drain(self.backend, replica_id, who=self.who)

    def undrain(self, replica_id: str) -> handover.HandoverResult:
        return handover.undrain(self.backend, replica_id)

    def cancel(self, flow_id: str, *, revert: bool = False) -> actions.ActionResult:
        return actions.cancel(self.backend, self.resolve(flow_id), who=self.who, revert=revert)

    def retry(self, flow_id: str, *, task: str | None = None, decision: str | None = None,
              allow_build: str | None = None) -> actions.ActionResult:
        return actions.retry(self.backend, self.resolve(flow_id), task, decision, who=self.who,
                             allow_build=allow_build)

    def allow_stranded(self, build: str) -> rollback.RollbackReport:
        """``retry --allow-build`` on every flow stranded for its build."""
        return rollback.allow_stranded(self.backend, build, who=self.who)

    def purge(self, finished_before: float, *, dry_run: bool = False, include_failed: bool = False,
              force: bool = False) -> actions.PurgeReport:
        return actions.purge(self.backend, finished_before, dry_run, who=self.who, include_failed=include_failed,
                             force=force)

    def delete(self, flow_id: str) -> actions.ActionResult:
        return deleting.delete(self.backend, self.resolve(flow_id), who=self.who)

    # ----------------------------------------------------------------- bulk

    def bulk_cancel(self, flows: Sequence[FlowRow], *, revert: bool = False, dry_run: bool = False
                    ) -> bulk.BulkReport:
        return bulk.apply("cancel", flows, lambda f: actions.cancel(self.backend, f, who=self.who, revert=revert),
                          dry_run=dry_run)

    def bulk_retry(self, flows: Sequence[FlowRow], *, dry_run: bool = False) -> bulk.BulkReport:
        return bulk.apply("retry", flows, lambda f: actions.retry(self.backend, f, who=self.who), dry_run=dry_run)

    def bulk_release(self, flows: Sequence[FlowRow], *, force: bool = False, dry_run: bool = False
                     ) -> bulk.BulkReport:
        return bulk.apply("release", flows, lambda f: self.release(f, force=force), dry_run=dry_run)

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> Ops:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str, *, who: str | None = None, **options: Any) -> Ops:
    """The operator API over the backend ``url`` names (closed with it)."""
    return Ops(open_backend(url, **options), who=who, owns_backend=True)
