"""DBOS side of the restart-in-place figure (workload "dbos"): one DBOS
process, run as a script of the DBOS venv.

``dbos_restart.py --url URL --executor-id ID --ledger FILE [--start WFID
--count N --delay S]``: launch DBOS with that executor id; with ``--start``,
start the workflow ``WFID`` (N steps of S seconds, each writing its start
and end to the ledger, ``common.note``). Then wait for ``WFID`` to finish
and exit.

The bench SIGKILLs the first process mid-flow and starts this script again
with the same executor id and no ``--start``: DBOS's launch finds the
workflows that executor left pending and resumes them from their last
recorded step, which is the figure. DBOS never takes over another
executor's workflows by itself (that needs its Conductor service or a call
of ``DBOS.recover_pending_workflows``), so the same executor id is what
makes this a restart in place.
"""

from __future__ import annotations

import argparse
import time

from common import note
from dbos import DBOS, DBOSConfig, SetWorkflowID


@DBOS.step()
def step(n: int, delay: float, ledger: str) -> None:
    note(ledger, "start", f"step-{n:02d}")
    time.sleep(delay)
    note(ledger, "end", f"step-{n:02d}")


@DBOS.workflow()
def steps(count: int, delay: float, ledger: str) -> None:
    for n in range(count):
        step(n, delay, ledger)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--executor-id", required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--start", metavar="WFID")
    parser.add_argument("--workflow", default="restart-bench", help="the workflow id to wait for")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.1)
    return parser.parse_args()


def main() -> None:
    args = _args()
    config: DBOSConfig = {"name": "flowbaton-bench-restart", "system_database_url": args.url,
                          "executor_id": args.executor_id, "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.launch()
    if args.start:
        with SetWorkflowID(args.start):
            DBOS.start_workflow(steps, args.count, args.delay, args.ledger)
    DBOS.retrieve_workflow(args.start or args.workflow).get_result()
    DBOS.destroy()


if __name__ == "__main__":
    main()
