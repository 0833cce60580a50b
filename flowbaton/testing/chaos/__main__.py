"""``python -m flowbaton.testing.chaos``: one fault-injection run, then its verdict.

Exit status 0 when every invariant held, 1 when one was violated, 2 on bad
arguments. The report is written as JSON (``--report``, and ``report.json``
in the run folder) and printed as a short table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from flowbaton.testing.chaos.nemesis import REPLICA_FAULTS
from flowbaton.testing.chaos.report import table, write_report
from flowbaton.testing.chaos.run import WORKLOAD, ChaosConfig, recheck, run_chaos
from flowbaton.testing.chaos.setups import BACKEND_FAULTS

__all__ = ["main"]

_ALL_FAULTS = sorted({*REPLICA_FAULTS, *(f for faults in BACKEND_FAULTS.values() for f in faults)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flowbaton.testing.chaos",
                                     description="Run replicas under injected faults and check that no flow "
                                                 "is lost, stranded or written by two owners.")
    parser.add_argument("--backend", metavar="KIND|URL",
                        help="sqlite, zookeeper (local 3-node ensemble), redis (local primary + 2 replicas + Sentinel, "
                             "deploy/README settings), redis-bare (1 replica, no min-replicas-to-write), "
                             "redis-cluster (local 3 primaries + 3 replicas, deploy/README settings), "
                             "or the URL of servers you run (replica faults and cuts only)")
    parser.add_argument("--flows", type=int, default=60, metavar="M", help="flows to submit (default 60)")
    parser.add_argument("--replicas", type=int, default=3, metavar="N", help="replica processes (default 3)")
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="seeds the faults and the workload")
    parser.add_argument("--duration", type=float, default=45.0, metavar="D", help="seconds of faults (default 45)")
    parser.add_argument("--lease", type=float, default=2.0, help="replica lease / session timeout (default 2)")
    parser.add_argument("--concurrency", type=int, default=4, help="flows per replica at once (default 4)")
    parser.add_argument("--faults", metavar="KIND,...", help=f"only these fault kinds ({', '.join(_ALL_FAULTS)})")
    parser.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report here too")
    parser.add_argument("--folder", type=Path, metavar="DIR", help="run folder (default: a new temporary one)")
    parser.add_argument("--factory", default=WORKLOAD, metavar="MODULE:FUNCTION",
                        help="your own flow factory instead of the built-in workload")
    parser.add_argument("--kwargs", default="{}", metavar="JSON", help="keyword arguments of --factory")
    parser.add_argument("--inputs", default="{}", metavar="JSON", help="inputs of every flow (your own factory)")
    parser.add_argument("--allow", action="append", metavar="PREFIX",
                        help="module prefixes replicas may import (default: the workload's; repeatable)")
    parser.add_argument("--mix", default="0.8,0.1,0.1", metavar="P,F,D",
                        help="shares of plain, flaky and doomed workload flows (default 0.8,0.1,0.1)")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="seconds to wait for flows to end")
    parser.add_argument("--recovery-slack", type=float, default=10.0,
                        help="seconds beyond the lease a recovery may take before it counts as a violation")
    parser.add_argument("--verbose", "-v", action="store_true", help="log each fault as it happens")
    parser.add_argument("--recheck", type=Path, metavar="DIR",
                        help="run nothing: check the evidence of a finished run folder again")
    return parser


def config_from(args: argparse.Namespace) -> ChaosConfig:
    if not args.backend:
        raise ValueError("--backend is required (sqlite, zookeeper, redis or a URL)")
    kwargs, inputs = json.loads(args.kwargs), json.loads(args.inputs)
    if not isinstance(kwargs, dict) or not isinstance(inputs, dict):
        raise ValueError("--kwargs and --inputs must be JSON objects")
    allow = args.allow or (["flowbaton.testing.chaos."] if args.factory == WORKLOAD
                           else [args.factory.split(":")[0]])
    faults = [f.strip() for f in args.faults.split(",")] if args.faults else None
    mix = [float(share) for share in args.mix.split(",")]
    if len(mix) != 3 or min(mix) < 0 or sum(mix) <= 0:
        raise ValueError("--mix takes three non-negative shares: plain,flaky,doomed")
    unknown = sorted(set(faults or []) - set(_ALL_FAULTS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; known: {', '.join(_ALL_FAULTS)}")
    return ChaosConfig(backend=args.backend, flows=args.flows, replicas=args.replicas, seed=args.seed,
                       duration=args.duration, lease=args.lease, concurrency=args.concurrency, faults=faults,
                       folder=args.folder, factory=args.factory, kwargs=kwargs, inputs=inputs, allow=allow,
                       drain_timeout=args.drain_timeout, recovery_slack=args.recovery_slack, mix=mix)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(message)s")
    if args.verbose:
        logging.getLogger("flowbaton.testing.chaos").setLevel(logging.WARNING)
    if args.recheck:
        report = recheck(args.recheck, args.recovery_slack)
    else:
        try:
            config = config_from(args)
        except ValueError as err:
            print(f"chaos: {err}", file=sys.stderr)
            return 2
        report = run_chaos(config)
    if args.report:
        write_report(report, args.report)
    print(table(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
