"""Workloads 2 and 3, failover and zombie: 20 tasks of 0.1 s, two replicas
(flowbaton replicas / TaskFlow conductors), the owner signalled after five
tasks (see ``trials.py`` for what is measured and how).

Per pair, all trials of flowbaton run as one group, then all of TaskFlow:
SIGKILL on ZooKeeper and Redis at leases of 4 s and 10 s (TaskFlow: the
session timeout of its ZooKeeper jobboard, the claim expiry on its Redis
jobboard), SIGTERM on both, SIGSTOP/SIGCONT on both at 4 s (``--zombies`` trials per
backend, summed: the zombie window is a race, one trial a pair would
mostly miss it). TaskFlow's
group also runs its stock Redis conductor (claims without expiry) once,
paired with flowbaton's Redis kill at 4 s.
"""

from __future__ import annotations

from .context import Context
from .sides import FlowbatonSide, Setup, TaskflowSide
from .stats import Figure, Target
from .trials import Side, Trial, run_group

__all__ = ["run"]

BACKENDS = {"zookeeper": "ZooKeeper", "redis": "Redis"}
TERM_LEASE = 10.0
ZOMBIE_LEASE = 4.0
STOCK_GRACE = 0.5  # the stock Redis conductor counts as "never" if no takeover by the longest lease + this


def _trials(ctx: Context, side: Side, leases: list[float]) -> dict[str, Trial]:
    def trial(key: str, backend: str, lease: float, kind: str, **more: object) -> Trial:
        folder = ctx.servers.scratch(f"{side.name}-{key.replace('.', '-')}")
        return Trial(side, Setup(backend, lease, folder, **more), kind)  # type: ignore[arg-type]

    trials: dict[str, Trial] = {}
    for backend in BACKENDS:
        for lease in leases:
            trials[f"kill.{backend}.{lease:g}"] = trial("kill", backend, lease, "kill")
            # Completed-task re-runs after a kill are counted on the first lease only (the others would
            # keep the group waiting for their survivors to finish).
            trials[f"kill.{backend}.{lease:g}"].reruns = lease == leases[0]
        trials[f"term.{backend}"] = trial("term", backend, TERM_LEASE, "term")
        for n in range(int(ctx.args.zombies)):
            trials[f"zombie.{backend}.{n}"] = trial("zombie", backend, ZOMBIE_LEASE, "zombie")
    if side.name == "taskflow":
        trials["stock"] = trial("stock", "redis", leases[0], "kill", expiry=False)
        trials["stock"].cap = max(leases) + STOCK_GRACE
    return trials


def _figures(leases: list[float], zombies: int) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    for backend, name in BACKENDS.items():
        for lease in leases:
            figures[f"kill.{backend}.{lease:g}"] = Figure(
                f"failover.kill.{backend}.lease{lease:g}", f"kill -9 → survivor's first task, {name}, "
                f"lease {lease:g} s", "s", Target("fb<=", lease + 0.5))
        figures[f"term.{backend}"] = Figure(f"failover.term.{backend}", f"SIGTERM → survivor's first task, {name}",
                                            "s", Target("fb<=", 0.5))
        figures[f"zombie.{backend}"] = Figure(f"zombie.{backend}.starts", f"zombie: tasks started after SIGCONT, "
                                              f"{name} ({zombies} trials a pair, summed)", "tasks", Target("fb==", 0))
        figures[f"zombie.{backend}.reruns"] = Figure(f"zombie.{backend}.reruns", f"zombie: completed tasks run "
                                                     f"again, {name} ({zombies} trials a pair, summed)", "tasks",
                                                     Target("fb==", 0))
        figures[f"zombie.{backend}.twice"] = Figure(f"zombie.{backend}.run_twice", f"zombie: tasks run more than "
                                                    f"once (in-doubt re-runs included), {name}, summed", "tasks")
    figures["kill.reruns"] = Figure("failover.kill.reruns", f"kill -9: completed tasks run again (lease {leases[0]:g} "
                                    "s, both backends)", "tasks", Target("fb==", 0))
    figures["stock"] = Figure("failover.kill.redis.stock", f"kill -9 → first task, Redis, TaskFlow stock conductor "
                              f"(no claim expiry; never = none within {max(leases) + STOCK_GRACE:g} s) vs flowbaton "
                              f"lease {leases[0]:g} s", "s")
    return figures


def _sources(leases: list[float]) -> dict[str, tuple[str, str]]:
    """Figure key -> (trial key prefix, result field); the values of every
    trial whose key starts with the prefix are summed."""
    sources: dict[str, tuple[str, str]] = {}
    for backend in BACKENDS:
        for lease in leases:
            sources[f"kill.{backend}.{lease:g}"] = (f"kill.{backend}.{lease:g}", "takeover")
        sources[f"term.{backend}"] = (f"term.{backend}", "takeover")
        sources[f"zombie.{backend}"] = (f"zombie.{backend}.", "zombie_starts")
        sources[f"zombie.{backend}.reruns"] = (f"zombie.{backend}.", "reruns")
        sources[f"zombie.{backend}.twice"] = (f"zombie.{backend}.", "twice")
    sources["kill.reruns"] = ("kill.", "reruns")
    return sources


def _under(key: str, prefix: str) -> bool:
    """``prefix`` ending in a dot is a group of trials; otherwise one trial."""
    return key.startswith(prefix) if prefix.endswith(".") else key == prefix


def _sum(trials: dict[str, Trial], prefix: str, field: str) -> float | None:
    """Sum of ``field`` over the trials under ``prefix``; None if none has it."""
    known = [trial.result[field] for key, trial in trials.items()
             if _under(key, prefix) and trial.result.get(field) is not None]
    return float(sum(known)) if known else None


def _errors(figure: Figure, side: str, trials: dict[str, Trial], prefix: str) -> None:
    for key, trial in trials.items():
        if _under(key, prefix) and "error" in trial.result:
            figure.errors.append(f"{side}: {trial.result['error']}")


def _record(figures: dict[str, Figure], fb: dict[str, Trial], tf: dict[str, Trial], leases: list[float]) -> None:
    for key, (prefix, field) in _sources(leases).items():
        figures[key].add(_sum(fb, prefix, field), _sum(tf, prefix, field))
        _errors(figures[key], "flowbaton", fb, prefix)
        _errors(figures[key], "taskflow", tf, prefix)
    first = f"kill.redis.{leases[0]:g}"
    figures["stock"].add(_sum(fb, first, "takeover"), _sum(tf, "stock", "takeover"))


def run(ctx: Context) -> list[Figure]:
    leases = [float(x) for x in str(ctx.args.leases).split(",")]
    figures = _figures(leases, int(ctx.args.zombies))
    fb_side = FlowbatonSide(ctx.servers)
    tf_side = TaskflowSide(ctx.servers, ctx.taskflow_python, ctx.logs)
    try:
        for pair in range(ctx.pairs):
            ctx.say(f"failover + zombie: pair {pair + 1}/{ctx.pairs}")
            fb = _trials(ctx, fb_side, leases)
            run_group(list(fb.values()))
            tf = _trials(ctx, tf_side, leases)
            run_group(list(tf.values()))
            _record(figures, fb, tf, leases)
    finally:
        fb_side.close()
        tf_side.close()
    ctx.notes.append(
        "failover: seconds from the signal to the first task the other replica starts (ledger times); "
        "TaskFlow: stock blocking conductors, ZooKeeper persistence, the jobboard session timeout (ZooKeeper) "
        "or claim expiry renewed every third of it (Redis) set to the lease. Trials of one system run "
        "side by side in one group per pair.")
    return list(figures.values())
