"""``flowbaton.run``: run one flow here and now, with the same guarantees.

The flow is stored and claimed like any other, so a crash mid-flow leaves
it resumable (by ``run(..., flow_id=...)`` again or by any replica), and a
second ``run`` of the same flow is refused while the first one's lease
lives. The flow runs on a helper thread so that Ctrl-C stops it gracefully:
running tasks finish, the claim is released, the flow stays resumable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..backends.base import Backend
from ..backends.errors import BackendUnavailable, ClaimHeld, ClaimLost, FlowNotFound
from ..backends.records import ClaimToken, FlowDetail
from ..backends.states import RUNNABLE_FLOW_STATES
from ..engine import FlowReport, factory_name, new_flow_detail, run_flow
from ..engine.builds import AUTO_BUILD, resolve_build
from ..engine.claim import Claim
from ..engine.errors import FactoryError
from .identity import default_replica_id
from .lease import LeasedGate, LeaseKeeper
from .opening import open_with_lease
from .release import release_claim

__all__ = ["run"]

log = logging.getLogger("flowbaton.coordinator")


def run(
    factory: str | Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    *,
    backend: str | Backend | None = None,
    flow_id: str | None = None,
    name: str | None = None,
    allow: Sequence[str] | None = None,
    lease: float = 10.0,
    max_workers: int = 8,
    build: str | None = AUTO_BUILD,
) -> FlowReport:
    """Create the flow (or resume ``flow_id`` if it is stored), run it to
    its end in this process, and return its report.

    ``backend`` is a URL or an open Backend (default ``FLOWBATON_BACKEND``,
    else ``sqlite:///./flowbaton.db``). ``allow`` defaults to exactly
    ``factory``. Raises ``ClaimHeld`` while another process runs the flow,
    ``ClaimLost`` if the claim was lost mid-run (the flow stays resumable).
    ``build`` is as for ``connect`` (``"auto"``: the version of the
    distribution providing ``factory``, if one does): a new flow records
    it, and a stored flow that newer code already ran raises
    ``BuildTooOld`` instead of resuming on this older code.
    """
    mine = resolve_build(build, [factory_name(factory)])
    store = backend if isinstance(backend, Backend) else open_with_lease(backend, lease)
    try:
        flow = _create_or_load(store, factory, args, kwargs, inputs, name, flow_id, mine)
        if flow.state not in RUNNABLE_FLOW_STATES:
            return FlowReport.of(flow, store.load_tasks(flow.id))
        # Default: exactly the factory the caller named (checked equal to the
        # stored one), so a record swapped in under the run's feet names nothing else.
        allowed = list(allow) if allow is not None else [flow.factory]
        return _claim_and_run(store, flow.id, allowed, lease, max_workers, mine)
    finally:
        if not isinstance(backend, Backend):
            store.close()


def _create_or_load(
    store: Backend,
    factory: str | Callable[..., Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    inputs: Mapping[str, Any] | None,
    name: str | None,
    flow_id: str | None,
    build: str | None,
) -> FlowDetail:
    """The stored flow ``flow_id`` (made by this very factory), else a new one."""
    if flow_id is not None:
        try:
            flow = store.load_flow(flow_id)
        except FlowNotFound:
            pass
        else:
            _check_same_factory(flow, factory_name(factory))
            return flow
    detail = new_flow_detail(factory, args, kwargs, inputs, name=name, flow_id=flow_id, build=build)
    store.create_flow(detail)
    return detail


def _check_same_factory(flow: FlowDetail, given: str) -> None:
    if flow.factory != given:
        raise FactoryError(
            f"flow {flow.id} was created by factory {flow.factory!r}, not {given!r}; "
            "resume it with the same factory (its stored arguments are reused)"
        )


def _claim_and_run(
    store: Backend, flow_id: str, allow: list[str], lease: float, max_workers: int, build: str | None
) -> FlowReport:
    replica_id = default_replica_id()
    sent_at = time.monotonic()
    try:
        token = store.claim(flow_id, replica_id, lease)
    except ClaimHeld as err:
        raise ClaimHeld(
            f"flow {flow_id} is being run elsewhere ({err}); it can be resumed here "
            f"once that run stops or its lease ({lease:g}s) runs out"
        ) from err
    claim = Claim(token, LeasedGate(), sent_at)
    keeper = LeaseKeeper(store, replica_id, lease)
    keeper.track(claim)
    keeper.start()
    try:
        report = _run_on_thread(store, claim, replica_id, allow, max_workers, build)
    finally:
        keeper.stop()
        # Also after giving the claim up: on ZooKeeper it lives as long as the
        # session, and the release is fenced (docs/chaos-bugs.md #1).
        _release(store, token, gave_up=claim.gate.lost)
    if claim.gate.lost:
        raise ClaimLost(f"flow {flow_id}: {claim.gate.lost_reason}; it stays resumable")
    return report


def _run_on_thread(
    store: Backend, claim: Claim[LeasedGate], replica_id: str, allow: list[str], max_workers: int,
    build: str | None,
) -> FlowReport:
    """Run the flow on a helper thread; Ctrl-C here asks it to stop at the
    next task boundary instead of abandoning tasks half-done."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            # No poison rule: the caller sees every death, and counts them.
            box["report"] = run_flow(store, claim, replica_id=replica_id, allow=allow, max_workers=max_workers,
                                     poison=None, build=build)
        except BaseException as err:  # handed to the calling thread
            box["error"] = err

    thread = threading.Thread(target=target, name=f"flowbaton-run-{claim.flow_id[:12]}", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        log.warning("interrupted: letting running tasks of flow %s finish, then releasing it", claim.flow_id)
        claim.gate.stop("interrupted")
        thread.join()
        raise
    if "error" in box:
        raise box["error"]
    report: FlowReport = box["report"]
    return report


def _release(store: Backend, token: ClaimToken, *, gave_up: bool) -> None:
    """Fenced: frees the claim only if it is still ours; one attempt, since
    a person is waiting (``coordinator.release``). After giving the claim
    up, a backend that cannot take the release leaves it to expire and the
    caller hears ``ClaimLost``, the news that matters; else it hears
    ``BackendUnavailable``."""
    try:
        gone = release_claim(store, token, patience=0.0)
    except BackendUnavailable as err:
        if not gave_up:
            raise
        log.warning("flow %s: release failed, the lease will expire: %s", token.flow_id, err)
        return
    if gone is not None:
        log.info("flow %s: claim already gone at release: %s", token.flow_id, gone)
