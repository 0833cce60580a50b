"""The web view as a function: ``WebApp.handle(Request) -> Response``.

Routes, under ``UiOptions.base`` ("" for ``flowbaton ui``, "/ui" on a
replica's probe port)::

    GET  /                          replicas, their claims and lease left
    GET  /flows?state=&factory=&name=&owner=&after=   a page of flows
    GET  /flows/<id>                one flow: header, timeline, tasks, attempts, failures, plan, history
    POST /flows/<id>/<action>       release, cancel, retry (only with actions)
    GET  /login?token=  POST /login the session actions need
    GET  /static/<file>             our stylesheet and refresh script

Errors are pages with one line of reason, never a traceback: 404 for an
unknown page or flow, 400 for a filter or cursor no listing accepts, 403
for a refused Host, login or form, 405 for a method not served (every
POST without actions), 503 when the backend does not answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ..backends.errors import BackendUnavailable, BadCursor, CorruptRecord, FlowNotFound
from ..ops import OpRefused, Ops
from .actions import ACTIONS, act
from .messages import MAX_BODY, Request, Response
from .pages import BadFilter, flow_view, flows_view, replicas_view
from .render import STATIC, Renderer
from .security import SECURITY_HEADERS, Guard

__all__ = ["UiOptions", "WebApp"]

log = logging.getLogger("flowbaton.web")

_READ_METHODS = "GET, HEAD"


@dataclass(frozen=True)
class UiOptions:
    """``base``: the path prefix of every page; ``allow``: the factories the
    plan may import (empty: no plan); ``actions``: the action buttons and
    their POSTs; ``refresh``: seconds between reloads (0: none)."""

    base: str = ""
    allow: tuple[str, ...] = ()
    actions: bool = False
    refresh: float = 5.0


class _Refused(Exception):
    """An answer other than the page: status and one line of reason."""

    def __init__(self, status: int, reason: str, *, allow: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.allow = allow


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


class WebApp:
    def __init__(self, ops: Ops, options: UiOptions | None = None, guard: Guard | None = None) -> None:
        self.ops = ops
        self.options = options or UiOptions()
        self.guard = guard or Guard()
        self.renderer = Renderer(self.options.base)
        self._flash_cookie = self.guard.cookie_name + "_flash"

    def handle(self, request: Request) -> Response:
        try:
            response = self._route(request)
        except _Refused as refused:
            response = self._error(refused.status, str(refused), refused.allow)
        except Exception:  # a bug: one line for the operator, the traceback in our log
            log.exception("%s %s failed", request.method, request.target[:200])
            response = self._error(500, "internal error: see the server's log")
        response.headers += SECURITY_HEADERS
        return response

    # ------------------------------------------------------------- routing

    def _route(self, request: Request) -> Response:
        if not self.guard.host_allowed(request):
            raise _Refused(403, "this server answers only to its own address (Host header refused)")
        base, path = self.options.base, request.path
        if base and path == base:
            return self._redirect(base + "/")
        if not path.startswith(base + "/"):
            raise _Refused(404, "no such page")
        segments = [unquote(part, errors="replace") for part in path[len(base) + 1:].split("/")]
        if request.method == "POST":
            return self._post(segments, request)
        if request.method not in ("GET", "HEAD"):
            raise _Refused(405, f"{request.method[:20]} is not served here", allow=self._methods())
        return self._read(segments, request)

    def _methods(self) -> str:
        return _READ_METHODS + (", POST" if self.options.actions else "")

    def _read(self, segments: list[str], request: Request) -> Response:
        try:
            return self._page(segments, request)
        except BackendUnavailable as err:
            raise _Refused(503, f"the backend does not answer: {_one_line(err)}") from err
        except FlowNotFound as err:
            raise _Refused(404, _one_line(err)) from err
        except (BadCursor, BadFilter, OpRefused) as err:
            raise _Refused(400, _one_line(err)) from err
        except CorruptRecord as err:
            raise _Refused(500, _one_line(err)) from err

    def _page(self, segments: list[str], request: Request) -> Response:
        match segments:
            case [""]:
                return self._html("replicas.html", request, view=replicas_view(self.ops))
            case ["flows"]:
                return self._html("flows.html", request, view=flows_view(self.ops, request.query))
            case ["flows", flow_id] if flow_id:
                return self._flow(flow_id, request)
            case ["static", name] if name in STATIC:
                return Response(200, self.renderer.static[name], STATIC[name])
            case ["login"] if self.options.actions:
                return self._login_link(request)
        raise _Refused(404, "no such page")

    # --------------------------------------------------------------- pages

    def _html(self, template: str, request: Request, **context: Any) -> Response:
        session = self.guard.session(request) if self.options.actions else None
        body = self.renderer.page(
            template, refresh=self.options.refresh, actions=self.options.actions,
            csrf=self.guard.csrf_token(session) if session else None, **context)
        return Response(200, body)

    def _flow(self, flow_id: str, request: Request) -> Response:
        view = flow_view(self.ops, flow_id, self.options.allow)
        flash = self._read_flash(request)
        response = self._html("flow.html", request, view=view, flash=flash)
        if flash is not None:  # shown once
            response.headers.append(("Set-Cookie", f"{self._flash_cookie}=; Path=/; Max-Age=0; HttpOnly; "
                                                   "SameSite=Strict"))
        return response

    def _error(self, status: int, reason: str, allow: str | None = None) -> Response:
        # An unreachable backend may come back: that page keeps reloading, the others wait for the operator.
        refresh = self.options.refresh if status == 503 else 0
        body = self.renderer.page("error.html", status=status, reason=reason, refresh=refresh, actions=False,
                                  csrf=None)
        return Response(status, body, headers=[("Allow", allow)] if allow else [])

    @staticmethod
    def _redirect(location: str, *headers: tuple[str, str]) -> Response:
        return Response(303, b"", "text/plain; charset=utf-8", [("Location", location), *headers])

    # ------------------------------------------------------------- actions

    def _post(self, segments: list[str], request: Request) -> Response:
        if not self.options.actions:
            raise _Refused(405, "this server is read-only: start it with --allow-actions to act on flows",
                           allow=_READ_METHODS)
        if len(request.body) > MAX_BODY:
            raise _Refused(413, "the form is too large")
        form = request.form()
        match segments:
            case ["login"]:
                return self._login(form.get("token", ""), request, form)
            case ["flows", flow_id, action] if flow_id and action in ACTIONS:
                return self._act(flow_id, action, request, form)
        raise _Refused(404, "no such action")

    def _act(self, flow_id: str, action: str, request: Request, form: dict[str, str]) -> Response:
        refusal = self.guard.refusal(request, form)
        if refusal is not None:
            raise _Refused(403, refusal)
        try:
            outcome = act(self.ops, action, flow_id)
        except BackendUnavailable as err:
            raise _Refused(503, f"the backend does not answer: {_one_line(err)}") from err
        except FlowNotFound as err:
            raise _Refused(404, _one_line(err)) from err
        flash = self._seal_flash(outcome.done, outcome.message)
        return self._redirect(self.renderer.flow_url(flow_id), ("Set-Cookie", flash))

    # --------------------------------------------------------------- login

    def _login_link(self, request: Request) -> Response:
        """``/login?token=...``, the link the server prints; without one, a form."""
        token = request.query.get("token")
        if token is None:
            return self._html("login.html", request)
        return self._logged_in(token)

    def _login(self, token: str, request: Request, form: dict[str, str]) -> Response:
        refusal = self.guard.refusal(request, form, needs_session=False)
        if refusal is not None:
            raise _Refused(403, refusal)
        return self._logged_in(token)

    def _logged_in(self, token: str) -> Response:
        session = self.guard.login(token)
        if session is None:
            raise _Refused(403, "wrong token: use the one the server printed or was given (--token-file, "
                                "FLOWBATON_UI_TOKEN)")
        return self._redirect(self.options.base + "/", ("Set-Cookie", self.guard.session_cookie(session)))

    # --------------------------------------------------------------- flash

    def _seal_flash(self, done: bool, message: str) -> str:
        """A one-time message for the next page, signed so no other site can set one."""
        packed = base64.urlsafe_b64encode(json.dumps([done, message[:1000]]).encode()).decode()
        value = f"{packed}.{self.guard.sign('flash:' + packed)}"
        return f"{self._flash_cookie}={value}; Path=/; HttpOnly; SameSite=Strict"

    def _read_flash(self, request: Request) -> tuple[bool, str] | None:
        packed, _, signature = request.cookies.get(self._flash_cookie, "").partition(".")
        if not packed or not self.guard.signed("flash:" + packed, signature):
            return None
        try:
            done, message = json.loads(base64.urlsafe_b64decode(packed))
        except (ValueError, binascii.Error, TypeError):
            return None
        return bool(done), str(message)
