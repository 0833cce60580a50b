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

from ..backends import DEFAULT_PATH, existing_default_url, open_backend
from ..backends.base import Backend
from ..engine.builds import AUTO_BUILD
from . import actions, bulk, handover, query, rollback
from . import delete as deleting
from .actions import OpRefused
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
        """Everything stored about one flow (``flowbaton show``): its record,
        tasks, live claim, declines, resume and operator history, and whether
        it is stranded (and why). Reads only. ``FlowNotFound`` when no flow
        has that id or prefix; ``OpRefused`` for an ambiguous prefix or a
        record nobody can read (the refusal names ``delete --force``)."""
        return query.show(self.backend, self.resolve(flow_id))

    def timeline(self, flow_id: str) -> Timeline:
        """Who ran which attempt of each task when, the claims and takeovers
        (``ops.timeline``; ``ops.timeline_svg.to_svg`` draws it)."""
        return timeline(self.show(flow_id))

    def claims(self, *, owner: str | None = None, stale: bool = False) -> list[ClaimRow]:
        """Live claims, oldest first (``flowbaton claims``): where each owner
        runs, the flow's state, the claim's age, lease left and the flow's
        last progress. ``owner``: only that replica's claims; ``stale``: only
        claims no live replica holds (a dead process whose lease has not run
        out, an interrupted operator command). Reads only."""
        return query.claims(self.backend, owner=owner, stale=stale)

    def replicas(self) -> ReplicasReport:
        """Live replicas, oldest first, with the flows each holds, its build and
        whether it is draining; the claims no live replica holds; and the
        backend's warnings about its server (``flowbaton replicas``). Reads only."""
        return query.replicas(self.backend)

    def plan(self, flow_id: str, allow: Sequence[str], build: str | None = AUTO_BUILD) -> FlowPlan:
        """What resuming the flow with the code importable here would do;
        imports only factories under ``allow``."""
        return query.plan(self.backend, self.resolve(flow_id), allow, build)

    def check(self) -> CheckReport:
        """``flowbaton check`` on this backend: reachable, server settings
        safe, which flowbaton versions the live replicas run. What it finds
        is reported, not raised (an unreachable backend is a problem in the
        report); ``ok`` is False when there is a problem. Reads only."""
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
        """Ask the live replica ``replica_id`` to hand back every flow it holds
        once their running tasks end, and to claim nothing more until
        ``undrain`` (``flowbaton drain``, for maintenance). Nothing is fenced
        and nothing runs twice: the request goes to the replica's mailbox, it
        sees it within a lease interval, and it is about this run of the
        replica only (a restart under the same id is not drained). The result
        lists the flows it held when asked. ``OpRefused`` when no live
        replica has that id."""
        return handover.drain(self.backend, replica_id, who=self.who)

    def undrain(self, replica_id: str) -> handover.HandoverResult:
        """Lift the drain of ``replica_id`` (``flowbaton drain --undo``): it
        claims flows again at its next beat. The result's ``request`` is the
        drain lifted, None when the replica was not drained. Removes only
        that request; the replica need not be live."""
        return handover.undrain(self.backend, replica_id)

    def cancel(self, flow_id: str, *, revert: bool = False) -> actions.ActionResult:
        """Stop the flow (``flowbaton cancel``): a forced claim bumps the epoch,
        so its owner is fenced (its next write fails with ``ClaimLost``) and
        no task of the flow starts again anywhere. The flow becomes CANCELLED
        and nothing is reverted: what finished stays done, and a task that was
        running is recorded as FAILURE (type ``flowbaton.Cancelled``: it may
        or may not have done its work; the call goes on in the fenced owner,
        but its result is never written).

        ``revert``: the flow becomes REVERTING instead, and a replica reverts
        every task that finished or may have (running ones included), newest
        first, ending REVERTED (FAILURE if a revert fails). ``OpRefused``
        unless the flow is PENDING, RUNNING, REVERTING or HELD."""
        return actions.cancel(self.backend, self.resolve(flow_id), who=self.who, revert=revert)

    def retry(self, flow_id: str, *, task: str | None = None, decision: str | None = None,
              allow_build: str | None = None) -> actions.ActionResult:
        """Put a stopped flow back to run (``flowbaton retry``), under a forced
        claim (a holder, if any, is fenced). On a FAILURE or REVERTED flow,
        its failed and reverted tasks (or only ``task``) become PENDING with
        their attempt counts kept, so attempt numbers go on and idempotency
        keys stay the same; the flow becomes RUNNING and unowned, for any
        replica, its takeover count reset. A HELD flow runs again too;
        ``decision`` (``"rerun"`` or ``"reuse"``) settles the major version
        change it was held for, for ``task`` or for every task.

        ``allow_build``: replicas of that build or newer may run the flow
        although newer code already ran it (a rollback on purpose); on a flow
        still runnable (PENDING, RUNNING, REVERTING) that is all it does.
        ``OpRefused`` when the flow is in another state, ``task`` is not a
        task it may reset, or a HELD flow needs a ``decision``."""
        return actions.retry(self.backend, self.resolve(flow_id), task, decision, who=self.who,
                             allow_build=allow_build)

    def allow_stranded(self, build: str) -> rollback.RollbackReport:
        """``retry --allow-build`` on every flow stranded for its build."""
        return rollback.allow_stranded(self.backend, build, who=self.who)

    def purge(self, finished_before: float, *, dry_run: bool = False, include_failed: bool = False,
              force: bool = False) -> actions.PurgeReport:
        """Delete finished flows last updated more than ``finished_before``
        seconds ago, with their tasks and declines (``flowbaton purge``):
        SUCCESS, REVERTED and CANCELLED ones, and FAILURE only with
        ``include_failed`` (a failed revert may have left side effects to
        clean up). Each flow is claimed without force and deleted under that
        claim, so one that someone holds, or that changed since the listing,
        is skipped, never fenced. ``dry_run``: list them, change nothing.
        ``OpRefused`` for an age under an hour, dry run too, unless ``force``:
        ``10`` typed for ``10d`` would delete everything."""
        return actions.purge(self.backend, finished_before, dry_run, who=self.who, include_failed=include_failed,
                             force=force)

    def delete(self, flow_id: str) -> actions.ActionResult:
        """Remove one flow for good, whatever its state, with its tasks,
        declines and claim (``flowbaton delete --force``; this call asks for
        no ``force``). Fenced: a forced claim comes first, so a live owner's
        next write fails. An unreadable record is removed too: the way out
        for a corrupt flow. ``FlowNotFound`` when nothing is stored."""
        return deleting.delete(self.backend, self.resolve(flow_id), who=self.who)

    # ----------------------------------------------------------------- bulk

    def bulk_cancel(self, flows: Sequence[FlowRow], *, revert: bool = False, dry_run: bool = False
                    ) -> bulk.BulkReport:
        """``cancel`` each of ``flows`` (rows of a listing, such as ``flows``
        returns) in their order, one at a time, exactly as the single action
        does (``flowbaton cancel`` with filters). A flow the action refuses
        now (it ended since the listing, it was deleted) is skipped with why,
        and the others go on. ``dry_run``: report the selection, change nothing."""
        return bulk.apply("cancel", flows, lambda f: actions.cancel(self.backend, f, who=self.who, revert=revert),
                          dry_run=dry_run)

    def bulk_retry(self, flows: Sequence[FlowRow], *, dry_run: bool = False) -> bulk.BulkReport:
        """``retry`` each of ``flows`` as a plain ``flowbaton retry`` with
        filters does: every failed and reverted task back to PENDING, with no
        ``task``, ``decision`` or ``allow_build`` (those are per flow), so a
        HELD flow that waits for a rerun/reuse choice is skipped. A flow the
        action refuses is skipped with why, and the others go on.
        ``dry_run``: report the selection, change nothing."""
        return bulk.apply("retry", flows, lambda f: actions.retry(self.backend, f, who=self.who), dry_run=dry_run)

    def bulk_release(self, flows: Sequence[FlowRow], *, force: bool = False, dry_run: bool = False
                     ) -> bulk.BulkReport:
        """``release`` each of ``flows``: a handover request to each live owner
        (nothing runs twice), or with ``force`` a fenced release (the task an
        owner is running may run twice). Without ``force``, a flow whose
        owner is no live replica is skipped with why, and the others go on.
        ``dry_run``: report the selection, change nothing."""
        return bulk.apply("release", flows, lambda f: self.release(f, force=force), dry_run=dry_run)

    # ------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the backend if ``connect`` opened it; an ``Ops`` made over a
        backend of the caller's leaves it open. Leaving a ``with`` block calls it."""
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> Ops:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(url: str | None = None, *, who: str | None = None, **options: Any) -> Ops:
    """The operator API over the backend ``url`` names (closed with it).
    Without ``url``: ``FLOWBATON_BACKEND``, else the working directory's
    ``flowbaton.db`` if it exists, as the CLI's commands do; ``OpRefused``
    when neither is there (an empty store would be made and reported on)."""
    if url is None:
        url = existing_default_url()
        if url is None:
            raise OpRefused(f"no backend given and {DEFAULT_PATH} does not exist here: pass a URL or set "
                            "FLOWBATON_BACKEND (the operator API does not create a store)")
    return Ops(open_backend(url, **options), who=who, owns_backend=True)
