"""A read-only web view for operators, over the operator API (``flowbaton.ops``).

``flowbaton ui`` serves it on its own port (``server.UiServer``); a replica
started with ``--ui`` serves the same pages under ``/ui/`` on its metrics
port (``server.mount``). Pages: the replicas and their claims, the flows
(filtered, a page at a time), and one flow with its timeline, tasks,
earlier attempts, failures, upgrade plan, declines and history. Actions
(release, cancel, retry) only when the server is started with them, behind
a token, a session and CSRF checks (``security``).

Needs Jinja2 (``pip install 'flowbaton[ui]'``): importing this package
without it raises ``ImportError``. Layout: ``app`` routes a ``Request`` to a
``Response`` (``messages``) with no socket, ``pages`` builds what each page
shows, ``render`` fills the templates, ``server`` puts the app on a socket.
"""

from __future__ import annotations

from .app import UiOptions, WebApp
from .messages import Request, Response
from .security import LOOPBACK_NAMES, Guard, is_loopback
from .server import UiServer, mount

__all__ = ["WebApp", "UiOptions", "Request", "Response", "Guard", "LOOPBACK_NAMES", "is_loopback", "UiServer", "mount"]
