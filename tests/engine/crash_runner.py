"""Run one stored flow in this process, as a replica would; the crash test kills it."""

from __future__ import annotations

import sys

from flowbaton.backends import open_backend
from flowbaton.engine import run_flow


def main(url: str, flow_id: str, lease: str) -> None:
    backend = open_backend(url)
    token = backend.claim(flow_id, "doomed", float(lease))
    run_flow(backend, token, replica_id="doomed", allow=["tests."])


if __name__ == "__main__":
    main(*sys.argv[1:4])
