"""``flowbaton replica``: one replica as its own process.

Each option falls back to an environment variable, then to a default
(flag > environment > default), because containers, Kubernetes and systemd
configure processes by environment. ``REPLICA_ENV`` names them all; the
deploy/ files may use no other (a test checks). The backend URL comes from
``--backend`` or ``FLOWBATON_BACKEND`` like every command's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..backends import default_url
from ..backends.errors import FlowbatonError
from ..coordinator.replica import DEFAULT_BUILD_TIMEOUT, DEFAULT_STOP_TIMEOUT, Coordinator, connect
from ..observability.logs import configure_logging
from ..observability.probes import DEFAULT_METRICS_PORT
from ..ops.stranded import count_stranded
from .args import (
    ALLOW_ENV,
    BUILD_ENV,
    add_allow_option,
    add_build_option,
    log_format,
    log_level,
    port_number,
    positive_count,
    positive_seconds,
)
from .common import UsageError
from .ui import replica_mount, require_jinja2

__all__ = ["REPLICA_ENV", "add_replica_options", "run_replica"]

log = logging.getLogger("flowbaton.coordinator")

#: option -> the environment variable it falls back to
REPLICA_ENV = {
    "--allow": ALLOW_ENV,
    "--concurrency": "FLOWBATON_CONCURRENCY",
    "--replica-id": "FLOWBATON_REPLICA_ID",
    "--lease": "FLOWBATON_LEASE",
    "--metrics-port": "FLOWBATON_METRICS_PORT",
    "--metrics-host": "FLOWBATON_METRICS_HOST",
    "--log-format": "FLOWBATON_LOG_FORMAT",
    "--log-level": "FLOWBATON_LOG_LEVEL",
    "--task-timeout": "FLOWBATON_TASK_TIMEOUT",
    "--build-timeout": "FLOWBATON_BUILD_TIMEOUT",
    "--stop-timeout": "FLOWBATON_STOP_TIMEOUT",
    "--build": BUILD_ENV,
    "--ui": "FLOWBATON_UI",
}


def _env(option: str, default: str | None = None) -> str | None:
    return os.environ.get(REPLICA_ENV[option]) or default


def add_replica_options(cmd: argparse.ArgumentParser) -> None:
    add_allow_option(cmd, "this replica")
    add_build_option(cmd, "the code this replica runs")
    cmd.add_argument("--concurrency", type=positive_count, metavar="N", default=_env("--concurrency", "4"),
                     help="flows run at once (default: $FLOWBATON_CONCURRENCY, else 4)")
    cmd.add_argument("--replica-id", default=_env("--replica-id"), metavar="ID",
                     help="default: $FLOWBATON_REPLICA_ID, else host-pid-random")
    cmd.add_argument("--lease", type=positive_seconds, metavar="SECONDS", default=_env("--lease", "10"),
                     help="seconds after this replica dies before its flows are taken over "
                     "(default: $FLOWBATON_LEASE, else 10)")
    cmd.add_argument("--metrics-port", type=port_number, default=_env("--metrics-port"), metavar="PORT",
                     help=f"serve /metrics, /healthz and /readyz on PORT, e.g. {DEFAULT_METRICS_PORT} "
                     "(default: $FLOWBATON_METRICS_PORT, else off; needs flowbaton[metrics])")
    cmd.add_argument("--metrics-host", default=_env("--metrics-host", ""), metavar="HOST",
                     help="address to bind the metrics port to (default: $FLOWBATON_METRICS_HOST, else all)")
    cmd.add_argument("--ui", action="store_true", default=(_env("--ui") or "").lower() in ("1", "true", "yes"),
                     help="with --metrics-port: also serve the read-only web view under /ui/ on that port (needs "
                     "flowbaton[ui]; default: $FLOWBATON_UI=1, else off)")
    cmd.add_argument("--log-format", type=log_format, metavar="{text,json}", default=_env("--log-format", "text"),
                     help="text or json: one JSON object per line (default: $FLOWBATON_LOG_FORMAT, else text)")
    cmd.add_argument("--log-level", type=log_level, metavar="LEVEL", default=_env("--log-level", "INFO"),
                     help="default: $FLOWBATON_LOG_LEVEL, else INFO")
    _add_timeout_options(cmd)


def _add_timeout_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--task-timeout", type=positive_seconds, metavar="SECONDS", default=_env("--task-timeout"),
                     help="bound of a task call when the task sets no timeout: past it the attempt fails "
                     "(TaskTimeout, retried per the task's policy) and, while its thread still runs, the flow "
                     "is kept here and /healthz reports it (default: $FLOWBATON_TASK_TIMEOUT, else none)")
    cmd.add_argument("--build-timeout", type=positive_seconds, metavar="SECONDS",
                     default=_env("--build-timeout", f"{DEFAULT_BUILD_TIMEOUT:g}"),
                     help="bound of importing a factory and building its flow: past it the flow is declined "
                     "and the claim counts toward the poison limit (default: $FLOWBATON_BUILD_TIMEOUT, "
                     f"else {DEFAULT_BUILD_TIMEOUT:g})")
    cmd.add_argument("--stop-timeout", type=positive_seconds, metavar="SECONDS",
                     default=_env("--stop-timeout", f"{DEFAULT_STOP_TIMEOUT:g}"),
                     help="on SIGTERM, seconds to wait for running flows to hand back; past it the replica "
                     "exits (status 1) without releasing them: their claims expire after the lease and the "
                     "next owner resumes them with the running task in doubt. Keep it below the supervisor's "
                     "grace period (default: $FLOWBATON_STOP_TIMEOUT, else "
                     f"{DEFAULT_STOP_TIMEOUT:g})")


def run_replica(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT, then hand the flows over and exit 0; or,
    past ``--stop-timeout``, exit 1 at once without handing over the flows
    still running (their threads cannot be stopped, only the process).
    ``args.wrap_backend`` (``main(wrap_backend=...)``), when set, wraps the
    backend the replica opens."""
    if args.ui:  # refused before the replica starts, not after it has claimed flows
        if args.metrics_port is None:
            raise UsageError("--ui serves the web view on the metrics port: add --metrics-port PORT")
        require_jinja2()
    configure_logging(args.log_format, args.log_level)
    coord = connect(getattr(args, "backend", None) or default_url(), replica_id=args.replica_id,
                    allow=args.allow, lease=args.lease, task_timeout=args.task_timeout,
                    build_timeout=args.build_timeout, stop_timeout=args.stop_timeout, build=args.build,
                    wrap_backend=getattr(args, "wrap_backend", None))
    clean = True
    try:
        for warning in coord.backend.warnings():
            log.warning("backend: %s", warning, extra={"replica_id": coord.replica_id})
        if args.metrics_port is not None:
            _serve_http(coord, args.metrics_port, args.metrics_host, ui=args.ui)
        clean = coord.serve(concurrency=args.concurrency)
    finally:
        coord.close()
    if not clean:
        _exit_now(1)
    return 0


def _exit_now(status: int) -> None:
    """End the process now: a stuck task thread, or a thread it started,
    must not keep it alive past the stop timeout (interpreter exit joins
    non-daemon threads)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(status)


def _serve_http(coord: Coordinator, port: int, host: str, *, ui: bool = False) -> None:
    backend = coord.backend
    coord.enable_metrics(stranded=lambda: count_stranded(backend))  # the same rule as `flows --stranded`
    mounts = {"/ui": replica_mount(backend, host)} if ui else None
    try:
        coord.serve_http(port, host, mounts=mounts)
    except OSError as err:  # port taken, address not ours
        raise FlowbatonError(f"cannot serve metrics on {host or '*'}:{port}: {err}") from err
