"""The operator commands of the CLI: listings, ``show``, ``plan``, the
fenced actions and ``check``.

Each command is a thin shell over ``flowbaton.ops`` (``query``, ``actions``,
``delete``, ``check``: the same functions scripts and the bench call) plus
rendering. Actions ask for
confirmation when stdin is a terminal, unless ``--yes``; a refusal, like any
bad input, is one line on stderr and exit status 2 (``cli.main``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..ops import actions as ops
from ..ops import bulk as ops_bulk
from ..ops import delete as ops_delete
from ..ops import handover, rollback
from ..ops import query as ops_query
from ..ops.check import check
from ..ops.ids import resolve_flow_id
from ..ops.timeline import timeline
from .args import (
    add_allow_option,
    add_build_option,
    add_flow_filters,
    allowed_build,
    count_arg,
    flow_filters,
    positive_seconds,
    time_age,
)
from .common import UsageError, emit, existing_url, impatient_options, opened
from .ops_views import render_check, render_plan, render_purge, render_replicas, render_rollback
from .terminal import printable, printable_lines
from .timeline import add_timeline_options, for_terminal, write_svg
from .views import Document, render_claims, render_flows, render_json, render_show

__all__ = ["add_ops_commands"]

EXIT_PROBLEM = 1

Command = Callable[[str, str], argparse.ArgumentParser]
D = TypeVar("D", bound="Document | Sequence[Document]")


def _json_flag(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--json", action="store_true", help="one JSON document")


def _yes_flag(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation on a terminal")


def add_ops_commands(command: Command) -> None:
    """Register the operator commands; ``command(name, help)`` makes a subparser."""
    _add_listings(command)
    _add_actions(command)
    cmd = command("check", "backend reachable, server settings safe, versions; exit 1 on a problem")
    cmd.set_defaults(func=cmd_check)


def _add_listings(command: Command) -> None:
    flows = command("flows", "list stored flows, oldest first")
    add_flow_filters(flows)
    flows.add_argument("--stranded", action="store_true",
                       help="only runnable flows no live replica will run (rows say why); exit 1 when "
                            "there are any, so a cron job or probe can alert on it")
    flows.add_argument("--limit", type=count_arg, metavar="N", help="at most N rows (a page)")
    flows.add_argument("--offset", type=count_arg, metavar="N", default=0, help="skip the first N rows")
    flows.add_argument("--after", metavar="CURSOR",
                       help="the page after CURSOR (with --limit): each page ends with a line 'next page: "
                            "--after CURSOR' on stderr; reads a page of the store, not all of it")
    _json_flag(flows)
    flows.set_defaults(func=cmd_flows)
    claims = command("claims", "live claims: owner host/pid, epoch, age, lease left, last progress")
    claims.add_argument("--owner", metavar="ID", help="only claims of this replica")
    claims.add_argument("--stale", action="store_true", help="only claims whose owner is no live replica")
    _json_flag(claims)
    claims.set_defaults(func=cmd_claims)
    replicas = command("replicas", "live replicas, their claims, and backend warnings")
    _json_flag(replicas)
    replicas.set_defaults(func=cmd_replicas)
    for name, help_text, func in (
        ("show", "one flow: record, tasks, unmatched, declines, resume history", cmd_show),
        ("plan", "what resuming a flow with the code here would do; changes nothing", cmd_plan),
    ):
        cmd = command(name, help_text)
        cmd.add_argument("flow_id", metavar="FLOW_ID")
        if name == "plan":  # it imports and calls the stored factory: never without a list
            add_allow_option(cmd, "plan")
            add_build_option(cmd, "the code here (would a replica of it decline the flow?)")
        if name == "show":
            add_timeline_options(cmd)
        _json_flag(cmd)
        cmd.set_defaults(func=func)


def _add_actions(command: Command) -> None:
    release = command("release", "ask a flow's owner to hand it back once its running tasks end (nothing runs "
                                 "twice); --force frees the claim at once instead")
    release.add_argument("flow_id", metavar="FLOW_ID", nargs="?")
    release.add_argument("--force", action="store_true",
                         help="free the claim now, bumping the epoch so the owner is fenced: the task it is "
                              "running is not stopped, and may run again on the next owner (it runs twice)")
    _wait_flags(release, "until the owner has handed the flow back")
    _bulk_flags(release, "release")
    _yes_flag(release)
    _json_flag(release)
    release.set_defaults(func=cmd_release)
    drain = command("drain", "ask a replica to hand back every flow once its running tasks end and to claim "
                             "nothing more (maintenance); --undo lifts it")
    drain.add_argument("replica_id", metavar="REPLICA_ID")
    drain.add_argument("--undo", action="store_true", help="lift the drain: the replica claims flows again")
    _wait_flags(drain, "until the replica holds no claim")
    _yes_flag(drain)
    _json_flag(drain)
    drain.set_defaults(func=cmd_drain)
    for name, help_text, func in (
        ("cancel", "stop a flow: no new task starts anywhere, state CANCELLED; nothing is reverted unless "
                   "--revert", cmd_cancel),
        ("retry", "put a FAILURE/REVERTED flow (or one task) back to run, settle a HELD flow, or let older "
                  "code run a flow (--allow-build)", cmd_retry),
    ):
        cmd = command(name, help_text)
        cmd.add_argument("flow_id", metavar="FLOW_ID", nargs="?")
        _yes_flag(cmd)
        _json_flag(cmd)
        cmd.set_defaults(func=func)
        _bulk_flags(cmd, name)
        if name == "retry":
            _add_retry_options(cmd)
        else:
            cmd.add_argument("--revert", action="store_true",
                             help="revert what finished (newest first, resumable like any revert; the flow ends "
                                  "REVERTED); without it nothing is reverted, and a task that was running is "
                                  "recorded as FAILURE (cancelled, may or may not have done its work)")
    delete = command("delete", "remove one flow (e.g. a corrupt one) with its tasks, declines and claim; "
                               "fenced: its owner's next write fails")
    delete.add_argument("flow_id", metavar="FLOW_ID")
    delete.add_argument("--force", action="store_true", help="required: the flow is gone for good")
    delete.add_argument("--dry-run", action="store_true", help="say what would be deleted; change nothing")
    _yes_flag(delete)
    _json_flag(delete)
    delete.set_defaults(func=cmd_delete)
    purge = command("purge", "delete finished flows (SUCCESS, REVERTED, CANCELLED) last updated long ago")
    purge.add_argument("--finished-before", metavar="DURATION", required=True, type=time_age,
                       help="a duration (30d, 12h) or an ISO time; flows last updated before then go")
    purge.add_argument("--include-failed", action="store_true",
                       help="FAILURE flows too (a failed revert: its side effects may still need cleanup)")
    purge.add_argument("--force", action="store_true",
                       help=f"allow a --finished-before under {ops.MIN_PURGE_AGE / 3600:g}h")
    purge.add_argument("--dry-run", action="store_true", help="list what would be purged; change nothing")
    _yes_flag(purge)
    _json_flag(purge)
    purge.set_defaults(func=cmd_purge)


def _bulk_flags(cmd: argparse.ArgumentParser, action: str) -> None:
    """Instead of FLOW_ID: every flow the filters select (at least one)."""
    group = cmd.add_argument_group(f"bulk {action} (instead of FLOW_ID; at least one filter)")
    add_flow_filters(group)
    group.add_argument("--dry-run", action="store_true", help=f"list the flows {action} would act on; change nothing")


def _wait_flags(cmd: argparse.ArgumentParser, until: str) -> None:
    cmd.add_argument("--wait", action="store_true", help=f"wait {until}")
    cmd.add_argument("--timeout", type=positive_seconds, default=300.0, metavar="SECONDS",
                     help="how long --wait waits (default 300); exit 1 when it runs out")


def _add_retry_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--task", metavar="ID", help="only this task (with --rerun/--reuse: the choice is for it)")
    choice = cmd.add_mutually_exclusive_group()
    choice.add_argument("--rerun", action="store_true", help="a task whose major version changed runs again")
    choice.add_argument("--reuse", action="store_true", help="... keeps its stored result")
    cmd.add_argument("--allow-build", type=allowed_build, metavar="VERSION",
                     help="a rollback on purpose: replicas of this build or newer may run the flow although it "
                     "already ran on a newer one (no newer than that build); on a PENDING/RUNNING flow this is "
                     "all retry does")
    cmd.add_argument("--stranded", action="store_true",
                     help="instead of FLOW_ID: every flow no live replica's build may run (with --allow-build)")


# ----------------------------------------------------------------- listings


def _emit_doc(args: argparse.Namespace, doc: D, render: Callable[[D], str]) -> int:
    """``--json``: the document's own JSON; else ``render`` it for people."""
    emit(render_json(doc) if args.json else render(doc))
    return 0


def _described(result: Any) -> str:
    """An action's result for people: its one line."""
    return printable(result.describe())


def cmd_flows(args: argparse.Namespace) -> int:
    if args.after is not None or (args.limit is not None and not args.stranded and not args.offset):
        return _flows_page(args)
    with opened(args) as backend:
        rows = ops_query.flows(backend, **flow_filters(args), stranded=args.stranded, limit=args.limit,
                               offset=args.offset)
    _emit_doc(args, rows, render_flows)
    return EXIT_PROBLEM if args.stranded and rows else 0


def _flows_page(args: argparse.Namespace) -> int:
    if args.stranded or args.offset:
        raise UsageError("--after pages with --limit and filters; not with --stranded or --offset")
    with opened(args) as backend:
        page = ops_query.flows_page(backend, limit=args.limit or 50, after=args.after, **flow_filters(args))
    _emit_doc(args, page.rows, render_flows)
    if page.next is not None:
        print(f"next page: --after {page.next}", file=sys.stderr)
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        rows = ops_query.claims(backend, owner=args.owner, stale=args.stale)
    return _emit_doc(args, rows, lambda r: render_claims(r, time.time()))


def cmd_replicas(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        doc = ops_query.replicas(backend)
    return _emit_doc(args, doc, lambda d: render_replicas(d, time.time()))


def cmd_show(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        doc = ops_query.show(backend, resolve_flow_id(backend, args.flow_id))
    if args.timeline or args.svg is not None:
        drawn = timeline(doc)
        if args.svg is not None:
            write_svg(args.svg, drawn)
        if args.timeline:
            return _emit_doc(args, drawn, for_terminal)
    return _emit_doc(args, doc, render_show)


def cmd_plan(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        doc = ops_query.plan(backend, resolve_flow_id(backend, args.flow_id), args.allow, args.build)
    return _emit_doc(args, doc, render_plan)


# ------------------------------------------------------------------ actions


def confirm(args: argparse.Namespace, question: str | Callable[[], str]) -> None:
    """Ask on a terminal (unless ``--yes``); anything but yes changes nothing.
    Scripts (stdin not a terminal) are not asked. A callable ``question`` is
    only built (it may read the backend) when it is asked."""
    if args.yes or not sys.stdin.isatty():
        return
    sys.stderr.write(f"{printable(question() if callable(question) else question)} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise UsageError("not confirmed; nothing was changed")


def _describe(backend: Any, flow_id: str) -> str:
    flow = ops.load_flow(backend, flow_id)
    claim = ops.current_claim(backend, flow_id)  # an unreadable one is replaced, like none
    owner = f", claimed by {claim.owner} at epoch {claim.epoch}" if claim else ", not claimed"
    return f"flow {flow_id} ({flow.state}{owner})"


def _act_on_flow(args: argparse.Namespace, question: Callable[[str], str], act: Callable[[Any], Any]) -> int:
    """Confirm ``question`` about the flow (described as it is now), act, say
    what was done. ``args.flow_id`` may be a unique prefix: resolved first."""
    with opened(args) as backend:
        args.flow_id = resolve_flow_id(backend, args.flow_id)
        confirm(args, lambda: question(_describe(backend, args.flow_id)))
        result = act(backend)
    _emit_doc(args, result, _described)
    return 0


def _bulk(args: argparse.Namespace, action: str, act: Callable[[Any, str], Any]) -> int:
    """``action`` on every flow the filters select; exit 1 when some were skipped."""
    filters = flow_filters(args)
    if not any(value is not None for value in filters.values()):
        raise UsageError(f"{action} needs FLOW_ID, or filters (--state, --factory, --name, --owner, --since, "
                         "--before) selecting the flows to act on")
    with opened(args) as backend:
        selected = ops_query.flows(backend, **filters)
        if not args.dry_run and selected:
            confirm(args, f"{action} {len(selected)} flow(s)?")
        report = ops_bulk.apply(action, selected, lambda flow_id: act(backend, flow_id), dry_run=args.dry_run)
    _emit_doc(args, report, lambda r: printable_lines(r.lines()))
    return EXIT_PROBLEM if report.skipped else 0


def _single_only(args: argparse.Namespace, action: str, *options: str) -> None:
    """Options that apply to one flow only, refused in a bulk action."""
    given = [option for option in options if getattr(args, option.lstrip("-").replace("-", "_"), None)]
    if given:
        raise UsageError(f"{action} without FLOW_ID acts on many flows: {', '.join(given)} apply to one flow only")


def cmd_release(args: argparse.Namespace) -> int:
    if args.flow_id is None:
        _single_only(args, "release", "--wait")
        return _bulk(args, "release", lambda backend, flow_id: (
            ops.release(backend, flow_id) if args.force else handover.request_release(backend, flow_id)))
    if args.force:
        return _act_on_flow(args, lambda flow: f"force {flow} free? Its owner is fenced, and the task it is "
                            "running may run twice.", lambda backend: ops.release(backend, args.flow_id))
    with opened(args) as backend:
        args.flow_id = resolve_flow_id(backend, args.flow_id)
        confirm(args, lambda: f"ask the owner of {_describe(backend, args.flow_id)} to hand it back?")
        result = handover.request_release(backend, args.flow_id)
        _emit_doc(args, result, _described)
        if args.wait:
            return _waited(lambda: handover.wait_handed_back(backend, result, args.timeout),
                           f"flow {args.flow_id} handed back")
    return 0


def cmd_drain(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        if args.undo:
            result = handover.undrain(backend, args.replica_id)
        else:
            confirm(args, f"drain replica {args.replica_id}: hand back every flow and claim nothing more?")
            result = handover.drain(backend, args.replica_id)
        _emit_doc(args, result, _described)
        if args.wait and not args.undo:
            return _waited(lambda: handover.wait_drained(backend, result, args.timeout),
                           f"replica {args.replica_id} drained")
    return 0


def _waited(wait: Callable[[], None], done: str) -> int:
    try:
        wait()
    except TimeoutError as err:
        print(f"flowbaton: {printable(str(err))}", file=sys.stderr)
        return EXIT_PROBLEM
    emit(printable(done))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    if args.flow_id is None:
        return _bulk(args, "cancel", lambda backend, flow_id: ops.cancel(backend, flow_id, revert=args.revert))
    what = "Its finished tasks will be reverted." if args.revert else "It will never run again."
    return _act_on_flow(args, lambda flow: f"cancel {flow}? {what}",
                        lambda backend: ops.cancel(backend, args.flow_id, revert=args.revert))


def cmd_retry(args: argparse.Namespace) -> int:
    if args.stranded:
        return _retry_stranded(args)
    if args.flow_id is None:
        _single_only(args, "retry", "--task", "--rerun", "--reuse", "--allow-build")
        return _bulk(args, "retry", lambda backend, flow_id: ops.retry(backend, flow_id))
    decision = "rerun" if args.rerun else "reuse" if args.reuse else None
    what = f" task {args.task}" if args.task else ""
    allowing = f", letting build {args.allow_build} or newer run it" if args.allow_build else ""
    return _act_on_flow(args, lambda flow: f"retry{what} of {flow}{allowing}?",
                        lambda backend: ops.retry(backend, args.flow_id, task=args.task, decision=decision,
                                                  allow_build=args.allow_build))


def _retry_stranded(args: argparse.Namespace) -> int:
    if args.flow_id is not None or args.task or args.rerun or args.reuse or any(
            value is not None for value in flow_filters(args).values()):
        raise UsageError("retry --stranded takes no FLOW_ID, --task, --rerun or --reuse: it applies "
                         "--allow-build to every flow stranded for its build")
    if args.allow_build is None:
        raise UsageError("retry --stranded needs --allow-build VERSION: the build that may run them")
    with opened(args) as backend:
        confirm(args, lambda: f"let build {args.allow_build} or newer run the "
                f"{len(rollback.build_stranded_flows(backend))} flow(s) stranded for their build?")
        report = rollback.allow_stranded(backend, args.allow_build)
    _emit_doc(args, report, render_rollback)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        args.flow_id = resolve_flow_id(backend, args.flow_id)
        plan = ops_delete.describe_delete(backend, args.flow_id)
        if args.dry_run:
            _emit_doc(args, plan, lambda p: printable(f"would delete {p.describe()}"))
            return 0
        if not args.force:
            raise UsageError(f"delete removes flow {args.flow_id} for good: add --force "
                             "(--dry-run shows what would go)")
        confirm(args, f"delete {plan.describe()} for good?")
        result = ops_delete.delete(backend, args.flow_id)
    _emit_doc(args, result, _described)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    with opened(args) as backend:
        listed = _purge(args, backend, dry_run=True)
        if args.dry_run:
            _emit_doc(args, listed, render_purge)
            return 0
        if not listed.flows:  # nothing to confirm: say "purged 0", not what a dry run would
            _emit_doc(args, ops.PurgeReport(False, listed.cutoff), render_purge)
            return 0
        confirm(args, f"delete {len(listed.flows)} finished flow(s) and their tasks for good?")
        report = _purge(args, backend, dry_run=False)
    _emit_doc(args, report, render_purge)
    return 0


def _purge(args: argparse.Namespace, backend: Any, dry_run: bool) -> ops.PurgeReport:
    return ops.purge(backend, args.finished_before, dry_run, include_failed=args.include_failed, force=args.force)


def cmd_check(args: argparse.Namespace) -> int:
    given = getattr(args, "backend_object", None)
    if given is not None:
        report = check(given)
    else:
        url = existing_url(args)
        report = check(url, **impatient_options(url))  # a person waits: as patient as the other commands
    emit(render_check(report))
    return 0 if report.ok else EXIT_PROBLEM

