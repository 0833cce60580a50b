"""Run one stored flow in this process through ``flowbaton.run`` (which keeps
its lease renewed); the crash test kills this process mid-task."""

from __future__ import annotations

import sys

import flowbaton


def main(url: str, flow_id: str, lease: str) -> None:
    flowbaton.run("tests.engine_flows:steps", backend=url, flow_id=flow_id, lease=float(lease))


if __name__ == "__main__":
    main(*sys.argv[1:4])
