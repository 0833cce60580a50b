"""Cancel every HELD flow of one factory that nobody touched for a day.

    python docs/examples/cancel_stale_held.py redis://redis:6379/0 'billing.flows:*' [--dry-run]

A HELD flow waits for an operator (a task's major version changed, a
poison flow, a corrupt record). After a day it is usually a leftover: this
script cancels them in one go through the operator API, the way the CLI's
``flowbaton cancel --state HELD --factory PATTERN --before 1d`` does.
"""

from __future__ import annotations

import argparse
import json
import time

import flowbaton.ops


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", help="backend URL, e.g. redis://redis:6379/0")
    parser.add_argument("factory", help="shell pattern of the factory, e.g. 'billing.flows:*'")
    parser.add_argument("--dry-run", action="store_true", help="list them; change nothing")
    args = parser.parse_args()

    with flowbaton.ops.connect(args.backend) as ops:
        stale = ops.flows(state="HELD", factory=args.factory, before=time.time() - 86400)
        report = ops.bulk_cancel(stale, dry_run=args.dry_run)
    print(json.dumps(report.to_json(), indent=2))
    return 1 if report.skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
