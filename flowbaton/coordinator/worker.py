"""Running one claimed flow, and what to do with the claim afterwards.

Every way a run can end maps to one action on the claim:

- the engine returned (flow done, held, or handed back on stop): release at
  once so another replica can continue without waiting for the lease;
- the claim was lost or given up (fenced, session gone, self-fenced): write
  nothing, then try a fenced release: refused if the claim is another's,
  it frees one we still hold (a session outlives our giving up on it);
- this replica cannot honour the flow (factory not allowed or not
  importable, today's code does not build): record a decline, release, and
  leave the flow alone locally for a while; never fail or delete it, since
  another replica (or the next deploy) may have the code;
- a corrupt record: log, hold the flow for the whole cluster (a placeholder
  if its own record is unreadable: coordinator.corrupt), release, skip
  locally; other flows go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..backends.base import Backend
from ..backends.errors import (
    BackendUnavailable,
    ClaimLost,
    CorruptRecord,
    DefinitionError,
    FlowbatonError,
)
from ..backends.records import Decline, FlowDetail, TaskDetail
from ..backends.states import RUNNABLE_FLOW_STATES
from ..engine.claim import Claim
from ..engine.counting import Found, Prepared
from ..engine.events import Events
from ..engine.gate import Gate
from ..engine.poison import DEFAULT_RULE, PoisonRule
from ..engine.report import FlowReport
from ..observability.observer import ReplicaObserver
from .corrupt import hold_corrupt
from .handover import Mailbox
from .lease import LeaseKeeper
from .release import release_claim
from .skiplist import SkipList

__all__ = ["WorkerSettings", "FlowWorker", "RunFlow"]

log = logging.getLogger("flowbaton.coordinator")


class RunFlow(Protocol):
    """What a worker calls to run its claimed flow: ``engine.run_flow``, or
    a test's stand-in. Every argument is given; the first two by position."""

    def __call__(
        self,
        backend: Backend,
        claim: Claim[Gate],
        /,
        *,
        flow: FlowDetail,
        tasks: dict[str, TaskDetail] | None,
        found: Found | None,
        replica_id: str,
        allow: Sequence[str] | None,
        max_workers: int,
        poison: PoisonRule | None,
        events: Events,
        task_timeout: float | None,
        build_timeout: float | None,
        build: str | None,
    ) -> FlowReport: ...


@dataclass(frozen=True)
class WorkerSettings:
    replica_id: str
    allow: Sequence[str] | None
    max_workers: int = 8
    poison: PoisonRule | None = DEFAULT_RULE  # when a flow that keeps killing replicas is held
    decline_backoff: float = 60.0  # seconds to leave a flow we cannot run alone
    error_backoff: float = 30.0  # same after an unexpected error or corrupt record
    release_patience: float = 30.0  # seconds to keep retrying a release the backend could not take
    task_timeout: float | None = None  # bound of a task call without a timeout of its own
    build_timeout: float | None = 60.0  # bound of a factory's import and build
    build: str | None = None  # this replica's code (engine.builds): never resume a flow newer code ran


class FlowWorker:
    """Thread body for one claimed flow: run it, then settle the claim."""

    def __init__(
        self,
        backend: Backend,
        keeper: LeaseKeeper,
        skips: SkipList,
        settings: WorkerSettings,
        run_flow: RunFlow,
        claim: Claim[Gate],
        observer: ReplicaObserver | None = None,
        prepared: Prepared | None = None,
        mailbox: Mailbox | None = None,
    ) -> None:
        self.backend = backend
        self.observer = observer or ReplicaObserver()
        self.keeper = keeper
        self.skips = skips
        self.settings = settings
        self.run_flow = run_flow
        self.claim = claim
        self.prepared = prepared  # the flow as read (and maybe counted) in its claim's batch
        self.mailbox = mailbox  # the replica's handover requests: one may be why the run stopped
        self.report: FlowReport | None = None

    @property
    def flow_id(self) -> str:
        return self.claim.flow_id

    @property
    def gate(self) -> Gate:
        return self.claim.gate

    def __call__(self) -> None:
        try:
            self._run()
        finally:
            self.keeper.untrack(self.flow_id)
            self.observer.ended(self.flow_id)
        if self.gate.lost:
            self.observer.claim_lost()
        # Released however the run ended. Given up is not gone: after a
        # self-fence or a failed write the claim may still be ours, and on
        # ZooKeeper it then lives as long as our session, stranding the flow.
        # The release is fenced: it frees the claim only if it is still ours
        # (docs/chaos-bugs.md #1).
        self.release()
        self._handed_back()

    def _handed_back(self) -> None:
        """When an operator asked for the flow back, say so, clear the
        request, and leave the flow to another replica for a lease."""
        if self.mailbox is None:
            return
        request = self.mailbox.handed_back(self.flow_id)
        if request is not None:
            self._log(logging.WARNING, "flow %s: handed back on the request of %s", request.by, event="handed_back",
                      requested_by=request.by)
            self.skips.add(self.flow_id, self.mailbox.lease, "handed back on request")

    def _run(self) -> None:
        """Run the flow and log how it ended."""
        try:
            self.report = self._run_engine()
        except DefinitionError as err:  # includes FactoryError, FactoryNotAllowed
            self._decline(err)
        except CorruptRecord as err:
            self._skip(f"corrupt record: {err}", logging.ERROR)
            self._hold_corrupt(err)
        except ClaimLost as err:
            self.gate.lose(f"claim lost: {err}")
        except BackendUnavailable as err:
            self.observer.backend_failed("run_flow", err)
            self._log(logging.WARNING, "backend unavailable while running flow %s: %s", err)
        except Exception as err:  # a bug must cost one flow, never the replica
            log.exception("flow %s failed unexpectedly in replica %s", self.flow_id,
                          self.settings.replica_id, extra=self._extra())
            self.skips.add(self.flow_id, self.settings.error_backoff, f"{type(err).__name__}: {err}")
        else:
            self._log_outcome()

    def _run_engine(self) -> FlowReport:
        """Run the flow; the observer hears of every task and flow outcome
        (metrics) and of calls stuck past their timeout (``/healthz``)."""
        flow = self._read_claimed()
        prepared, self.prepared = self.prepared, None  # read once: the run keeps it up to date from here
        return self.run_flow(
            self.backend, self.claim, flow=flow, tasks=prepared.tasks if prepared is not None else None,
            found=prepared.found if prepared is not None else None, replica_id=self.settings.replica_id,
            allow=self.settings.allow, max_workers=self.settings.max_workers, poison=self.settings.poison,
            events=self.observer, task_timeout=self.settings.task_timeout,
            build_timeout=self.settings.build_timeout, build=self.settings.build,
        )

    def _read_claimed(self) -> FlowDetail:
        """The flow's record, read once for the run. It tells whether this
        claim is a takeover (the record still names an owner that never
        handed the flow back: it died or was fenced), logged now, before
        anything runs; a record that cannot be read names no previous
        owner, so that claim is logged as a plain one. Read already when
        the claim loop read it with the rest of its batch (and if it counted
        the claim there, the owner it found is the one before ours)."""
        if self.prepared is not None:
            found = self.prepared.found
            self._log_claim(found.owner if found is not None else self.prepared.flow.owner)
            self.observer.running(self.flow_id, self.prepared.flow.factory)
            return self.prepared.flow
        try:
            flow = self.backend.load_flow(self.flow_id)
        except BaseException:
            self._log_claim(None)
            raise
        self._log_claim(flow.owner)
        self.observer.running(self.flow_id, flow.factory)
        return flow

    def _log_claim(self, previous: str | None) -> None:
        self.observer.claimed(takeover=previous is not None)
        if previous is not None:
            self._log(logging.WARNING, "took over flow %s from %s, which never released it", previous,
                      event="takeover", previous_owner=previous)
        else:
            self._log(logging.INFO, "claimed flow %s", event="claim")

    def _log_outcome(self) -> None:
        if self.gate.lost:
            self._log(logging.WARNING, "flow %s: gave up the claim: %s", self.gate.lost_reason, event="claim_lost")
        elif self.report is not None and self.report.state in RUNNABLE_FLOW_STATES and not self.gate.stopped:
            # The engine returned without finishing or being asked to stop:
            # claiming it again at once would spin. Leave it for a while.
            self._skip(f"run returned in state {self.report.state} without an end", logging.WARNING)
        elif self.report is not None:
            self._log(logging.INFO, "flow %s: run ended in state %s", self.report.state, event="run_ended",
                      state=self.report.state)

    def _decline(self, err: FlowbatonError) -> None:
        reason = f"{type(err).__name__}: {err}"
        self._log(logging.WARNING, "declining flow %s: %s", reason, event="decline", reason=reason)
        self.observer.declined()
        self.skips.add(self.flow_id, self.settings.decline_backoff, reason)
        try:
            with self.observer.backend_call("record_decline"):
                self.backend.record_decline(self.flow_id, Decline(self.settings.replica_id, reason, time.time()))
        except FlowbatonError as rec_err:
            self._log(logging.WARNING, "could not record the decline of flow %s: %s", rec_err)

    def _skip(self, reason: str, level: int) -> None:
        self._log(level, "skipping flow %s: %s", reason, event="skip", reason=reason)
        self.skips.add(self.flow_id, self.settings.error_backoff, reason)

    def _hold_corrupt(self, err: CorruptRecord) -> None:
        """Hold the flow for every replica, not only skip it here: else each
        replica claims it again after its backoff, for ever (coordinator.corrupt)."""
        try:
            done = hold_corrupt(self.backend, self.claim.token, err, self.settings.replica_id)
        except FlowbatonError as hold_err:
            self._log(logging.WARNING, "flow %s: could not hold the corrupt flow: %s", hold_err)
            return
        if done is not None:
            self._log(logging.ERROR, "flow %s: %s: %s", done, err, event="hold", reason=str(err))

    def release(self) -> None:
        """Hand the flow back now; another replica need not wait for the lease.
        A release the backend cannot take now (quorum lost, server
        restarting) is tried again for ``release_patience`` seconds
        (``coordinator.release``); after that the lease runs out on its own."""
        try:
            gone = release_claim(self.backend, self.claim.token, patience=self.settings.release_patience,
                                 observer=self.observer)
        except FlowbatonError as err:  # BackendUnavailable for longer than the patience, among others
            self._log(logging.WARNING, "flow %s: release failed, the lease will expire: %s", err, event="release")
        else:
            if gone is not None:
                self._log(logging.INFO, "flow %s: claim already gone at release: %s", gone, event="release")
            else:
                self._log(logging.INFO, "released flow %s", event="release")

    def _log(self, level: int, message: str, *args: object, **fields: object) -> None:
        """``message`` starts with the flow id's ``%s``; replica and epoch
        follow. ``fields`` join flow_id/replica_id/epoch as structured
        fields (``event`` names what happened: claim, takeover, release ...)."""
        log.log(level, message + " [replica %s epoch %d]", self.flow_id, *args,
                self.settings.replica_id, self.claim.epoch, extra={**self._extra(), **fields})

    def _extra(self) -> dict[str, object]:
        return {"flow_id": self.flow_id, "replica_id": self.settings.replica_id, "epoch": self.claim.epoch}
