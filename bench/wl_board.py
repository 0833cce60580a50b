"""Workload 4, board scale: many flows on the board (10,000 flowbaton flows;
TaskFlow jobs default to 2,000, see ``--taskflow-jobs``), on ZooKeeper.

Per pair, a fresh local ZooKeeper (so boards do not pile up across pairs),
each side in its own namespace: submit the flows (timed), then a fresh
replica process (``fb_board.py replica`` / ``peers/taskflow_board.py
probe``) measures connect-to-first-claim, its resident memory, and a fresh
client's listing of the claims.
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .stats import Figure, Target
from .workers import flowbaton_argv, run_once, taskflow_argv

__all__ = ["run"]


def _figures(flows: int, jobs: int) -> dict[str, Figure]:
    size = f"{flows:,} flowbaton flows vs {jobs:,} TaskFlow jobs" if flows != jobs else f"{flows:,} flows"
    return {
        "submit": Figure("board.submit_seconds", f"submit {size}", "s (total)"),
        "submit_rate": Figure("board.submit_per_s", f"submissions per second ({size})", "flows/s"),
        "first_claim": Figure("board.first_claim_seconds", f"fresh replica: connect → first claim, {size}", "s",
                              Target("fb<=", 1.0)),
        "list_claims": Figure("board.list_claims_seconds", f"fresh client: connect + list all claims, {size}", "s",
                              Target("fb<=", 1.0)),
        "rss": Figure("board.replica_rss_mib", f"replica memory (RSS) with {size} on the board", "MiB"),
        "list_flows": Figure("board.list_flows_seconds", f"fresh client: list every flow / job, {size}", "s"),
    }


def _flowbaton(server: Any, flows: int, log: Any) -> dict[str, Any]:
    url = server.url(namespace="board-flowbaton")
    submitted = run_once(flowbaton_argv("bench.fb_board", "submit", url, str(flows)), log, timeout=1800)
    probe = run_once(flowbaton_argv("bench.fb_board", "replica", url), log, timeout=600)
    return {**probe, "submit": submitted["seconds"]}


def _taskflow(ctx: Context, server: Any, jobs: int, log: Any) -> dict[str, Any]:
    python = ctx.taskflow_python
    where = ["--zk-hosts", server.hosts, "--root", "/board-taskflow"]
    submitted = run_once(taskflow_argv(python, "taskflow_board.py", "submit", *where, "--count", str(jobs)),
                         log, timeout=1800)
    probe = run_once(taskflow_argv(python, "taskflow_board.py", "probe", *where), log, timeout=600)
    # TaskFlow lists every job with its claim state in one pass: that listing is both figures.
    return {**probe, "submit": submitted["seconds"], "list_flows": probe["list_claims"]}


def run(ctx: Context) -> list[Figure]:
    flows, jobs = int(ctx.args.flows), int(ctx.args.taskflow_jobs)
    figures = _figures(flows, jobs)
    for pair in range(ctx.pairs):
        ctx.say(f"board scale: pair {pair + 1}/{ctx.pairs}")
        with ctx.servers.private_zookeeper() as server:
            fb = _flowbaton(server, flows, ctx.logs / "board-flowbaton.log")
            tf = _taskflow(ctx, server, jobs, ctx.logs / "board-taskflow.log")
        figures["submit"].add(fb["submit"], tf["submit"])
        figures["submit_rate"].add(flows / fb["submit"], jobs / tf["submit"])
        for key in ("first_claim", "list_claims", "rss", "list_flows"):
            field = "rss_mib" if key == "rss" else key
            figures[key].add(fb[field], tf[field])
    posting = figures["submit"].median("taskflow")
    if jobs != flows and posting is not None:
        per_job = posting / jobs
        ctx.notes.append(
            f"board scale: TaskFlow measured with {jobs:,} jobs, not {flows:,}: posting took {per_job * 1000:.0f} ms "
            f"a job here, so {flows:,} would add {(flows - jobs) * per_job / 60:.0f} min a pair "
            f"(--taskflow-jobs {flows} to measure it anyway).")
    ctx.notes.append(
        "board scale: a fresh ZooKeeper per pair, one namespace per side; TaskFlow's claim listing is a fresh board's "
        "iterjobs(ensure_fresh=True) plus job.state for every job (its board keeps no separate claim index), "
        "so its 'list every flow / job' figure is the same listing; flowbaton lists claims with list_claims "
        "and every flow with list_flows.")
    return list(figures.values())
