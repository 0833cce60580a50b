"""``flowbaton ui``: the operator web view (``flowbaton.web``) on a port of
its own, and the same pages under ``/ui/`` of a replica's metrics port
(``flowbaton replica --metrics-port P --ui``).

Read-only unless ``--allow-actions``; then acting needs a session opened
with the server's token (``--token-file``, ``FLOWBATON_UI_TOKEN``, else one
made up and printed once with the login link, as Jupyter does). On loopback
by default: binding elsewhere shows the flows to whoever reaches the port.
Jinja2 is an optional dependency (``flowbaton[ui]``), imported only when a
page is to be served, so every other command works without it.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..backends.base import Backend
from ..ops import Ops
from .args import add_allow_option, port_number, positive_seconds
from .common import UsageError, opened

if TYPE_CHECKING:
    from ..observability.probes import Mount
    from ..web import Guard

__all__ = ["add_ui_command", "cmd_ui", "replica_mount", "require_jinja2", "UI_TOKEN_ENV", "DEFAULT_UI_PORT",
           "NEEDS_JINJA2"]

UI_TOKEN_ENV = "FLOWBATON_UI_TOKEN"
DEFAULT_UI_PORT = 8765
NEEDS_JINJA2 = "the web view needs Jinja2, which is not installed: pip install 'flowbaton[ui]'"

Command = Callable[[str, str], argparse.ArgumentParser]


def add_ui_command(command: Command) -> None:
    cmd = command("ui", "serve a read-only web view of the replicas, claims and flows (needs flowbaton[ui])")
    cmd.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    cmd.add_argument("--port", type=port_number, default=DEFAULT_UI_PORT, help=f"default {DEFAULT_UI_PORT}")
    add_allow_option(cmd, "the flow page's upgrade plan", required=False)
    cmd.add_argument("--allow-actions", action="store_true",
                     help="show release, cancel and retry buttons on the flow page; they need the token")
    cmd.add_argument("--token-file", metavar="FILE",
                     help=f"with --allow-actions: the login token (default: ${UI_TOKEN_ENV}, else a new one, "
                          "printed with the login link)")
    cmd.add_argument("--refresh", type=positive_seconds, default=5.0, metavar="SECONDS",
                     help="seconds between page reloads (default 5)")
    cmd.set_defaults(func=cmd_ui)


def require_jinja2() -> None:
    """One clear line (exit status 2) instead of an ImportError deep in a page."""
    try:
        import jinja2  # noqa: F401
    except ImportError:
        raise UsageError(NEEDS_JINJA2) from None


def cmd_ui(args: argparse.Namespace) -> int:
    require_jinja2()
    from ..web import UiOptions, UiServer, WebApp

    token, made_up = _token(args) if args.allow_actions else (None, False)
    options = UiOptions(allow=tuple(args.allow or ()), actions=args.allow_actions, refresh=args.refresh)
    with opened(args) as backend:
        app = WebApp(Ops(backend), options, _guard(args.host, token))
        try:
            server = UiServer(app, host=args.host, port=args.port)
        except OSError as err:  # port taken, address not ours
            raise UsageError(f"cannot serve on {args.host}:{args.port}: {err}") from err
        with _page_errors_on_stderr():
            _announce(server.url, token, made_up)
            try:
                server.serve_forever()
            finally:
                server.close()
    return 0


def _token(args: argparse.Namespace) -> tuple[str, bool]:
    """The login token, and whether it was made up here (then it is printed)."""
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as file:
                token = file.read().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"--token-file: cannot read {args.token_file}: {err}") from err
        if not token:
            raise UsageError(f"--token-file: {args.token_file} is empty")
        return token, False
    given = os.environ.get(UI_TOKEN_ENV, "").strip()
    return (given, False) if given else (secrets.token_urlsafe(24), True)


def _guard(host: str, token: str | None) -> Guard:
    from ..web import LOOPBACK_NAMES, Guard, is_loopback

    # On loopback only this machine's names are accepted in Host (DNS rebinding).
    hosts = LOOPBACK_NAMES | {host.lower()} if is_loopback(host.lower()) else None
    return Guard(token=token, hosts=hosts)


def _announce(url: str, token: str | None, made_up: bool) -> None:
    print(f"flowbaton ui: serving {url} ({'actions allowed' if token else 'read-only'}); Ctrl-C stops",
          file=sys.stderr)
    if token and made_up:
        print(f"flowbaton ui: to act on flows, open {url}login?token={token}", file=sys.stderr)
    elif token:
        print(f"flowbaton ui: to act on flows, log in at {url}login with the token", file=sys.stderr)
    sys.stderr.flush()


@contextmanager
def _page_errors_on_stderr() -> Iterator[None]:
    """While serving, a failing page logs its traceback here at once, not at
    exit: the CLI holds library warnings back until a command ends (``cli.main``)."""
    logger = logging.getLogger("flowbaton.web")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("flowbaton ui: %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def replica_mount(backend: Backend, host: str) -> Mount:
    """The read-only pages under ``/ui`` for a replica's probe server, over
    the replica's own backend (never actions there)."""
    require_jinja2()
    from ..web import UiOptions, WebApp, mount

    return mount(WebApp(Ops(backend), UiOptions(base="/ui"), _guard(host, None)))
