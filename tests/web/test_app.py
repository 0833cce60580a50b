"""The web view as a function (``WebApp.handle``), no socket and no browser:
routing and error pages, escaping of hostile records on every page, the
security headers, the Host check, login, CSRF and same-origin refusals,
and what the actions do to the store."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.base import Backend
from flowbaton.backends.records import FlowDetail
from flowbaton.ops import Ops
from flowbaton.testing.servers import free_port
from flowbaton.web import LOOPBACK_NAMES, Guard, Request, Response, UiOptions, WebApp
from tests.coordinator.ops_helpers import STEPS, present, store, task

from .seeds import HOSTILE, RAW_MARKUP, hostile_flow, many_flows

HOST = "127.0.0.1:8765"
ORIGIN = f"http://{HOST}"
TOKEN = "correct horse battery staple"
CSP = "default-src 'self'; script-src 'self'; style-src 'self'"


def app_over(backend: Backend, *, actions: bool = False, **options: object) -> WebApp:
    guard = Guard(token=TOKEN if actions else None, hosts=LOOPBACK_NAMES)
    return WebApp(Ops(backend), UiOptions(actions=actions, **options), guard)  # type: ignore[arg-type]


def get(app: WebApp, target: str, **headers: str) -> Response:
    return app.handle(Request("GET", target, {"host": HOST, **headers}))


def post(app: WebApp, target: str, form: dict[str, str], **headers: str) -> Response:
    body = "&".join(f"{quote(k)}={quote(v)}" for k, v in form.items()).encode()
    return app.handle(Request("POST", target, {"host": HOST, **headers}, body))


def html(response: Response) -> str:
    return response.body.decode()


def header(response: Response, name: str) -> str | None:
    return next((value for key, value in response.header_list() if key.lower() == name.lower()), None)


def reason(response: Response) -> str:
    found = re.search(r'<p class="reason" id="reason">(.*?)</p>', html(response), re.DOTALL)
    assert found, html(response)
    return found.group(1)


def one_line_error(response: Response, status: int) -> str:
    """The error page of ``status``: one line of reason, no traceback."""
    assert response.status == status, html(response)
    text = reason(response)
    assert "\n" not in text and "Traceback" not in html(response)
    return text


def session_of(app: WebApp) -> str:
    """A logged-in session's cookie header."""
    response = get(app, f"/login?token={quote(TOKEN)}")
    assert response.status == 303
    cookie = header(response, "Set-Cookie")
    assert cookie is not None
    return cookie.split(";", 1)[0]


def csrf_in(page: Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html(page))
    assert found, "no CSRF field on the page"
    return found.group(1)


# ------------------------------------------------------------------ routing


def test_each_page_shows_what_the_operator_api_reads(sqlite_backend: Backend) -> None:
    present(sqlite_backend, "r1", ["tests."])
    flow_id = store(sqlite_backend, "RUNNING", tasks=[task("s0", "SUCCESS", result=41), task("s1", "RUNNING")])
    sqlite_backend.claim(flow_id, "r1", 60.0)
    app = app_over(sqlite_backend)

    replicas = html(get(app, "/"))
    assert 'data-replica="r1"' in replicas and f'data-flow="{flow_id}" data-owner="r1"' in replicas
    assert 'class="lease-left"' in replicas
    flows = get(app, "/flows")
    assert flows.status == 200 and f'href="/flows/{flow_id}"' in html(flows)
    page = html(get(app, f"/flows/{flow_id[:8]}"))  # a unique prefix names the flow
    assert 'data-task="s0"' in page and 'data-task="s1"' in page and "41" in page
    assert '<span class="state" id="state">RUNNING</span>' in page and "r1 (claim" in page
    assert '<svg' in page and 'class="fb-timeline"' in page  # a record from before claim history is drawn too
    for name, kind in (("style.css", "text/css"), ("refresh.js", "text/javascript"), ("timeline.css", "text/css")):
        static = get(app, f"/static/{name}")
        assert static.status == 200 and static.content_type.startswith(kind) and static.body


def test_unknown_pages_and_flows_are_404(sqlite_backend: Backend) -> None:
    app = app_over(sqlite_backend)
    for target in ("/nothing", "/flows/", "/static/../app.py", "/static/nope.css", "/login", "/flows/a/b/c"):
        one_line_error(get(app, target), 404)
    assert "no flow" in one_line_error(get(app, "/flows/0123456789abcdef"), 404)


def test_a_bad_cursor_or_filter_is_a_400_page(sqlite_backend: Backend) -> None:
    app = app_over(sqlite_backend)
    assert "not a page cursor" in one_line_error(get(app, "/flows?after=12;DROP%20TABLE%20flows"), 400)
    assert "unknown state" in one_line_error(get(app, "/flows?state=BOGUS"), 400)
    one_line_error(get(app, "/flows?name=" + "x" * 500), 400)


def test_methods_other_than_get_are_405_and_every_post_without_actions(sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "FAILURE")
    app = app_over(sqlite_backend)
    put = app.handle(Request("PUT", "/flows", {"host": HOST}))
    assert put.status == 405 and header(put, "Allow") == "GET, HEAD"
    for target in ("/", "/login", f"/flows/{flow_id}/cancel", f"/flows/{flow_id}/retry", "/nowhere"):
        refused = post(app, target, {"token": TOKEN}, origin=ORIGIN)
        assert refused.status == 405 and header(refused, "Allow") == "GET, HEAD"
    assert sqlite_backend.load_flow(flow_id).state == "FAILURE"


def test_an_unreachable_backend_is_a_503_page_of_one_line() -> None:
    backend = open_backend(f"redis://127.0.0.1:{free_port()}/0?retry_deadline=0.2")
    try:
        app = app_over(backend)
        for target in ("/", "/flows", "/flows/0123456789abcdef"):
            unavailable = get(app, target)
            assert "the backend does not answer" in one_line_error(unavailable, 503)
            assert 'data-refresh="5.0"' in html(unavailable)  # it tries again by itself
    finally:
        backend.close()


def test_pages_under_a_prefix_link_under_it(sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "SUCCESS")
    app = app_over(sqlite_backend, base="/ui")
    bare = get(app, "/ui")
    assert bare.status == 303 and header(bare, "Location") == "/ui/"
    listing = html(get(app, "/ui/flows"))
    assert f'href="/ui/flows/{flow_id}"' in listing and 'href="/ui/static/style.css"' in listing
    assert get(app, f"/ui/flows/{flow_id}").status == 200 and get(app, "/ui/static/refresh.js").status == 200
    one_line_error(get(app, "/flows"), 404)


def test_a_flow_id_is_one_path_segment_whatever_it_holds(sqlite_backend: Backend) -> None:
    flow_id = "a/b?c d#e"  # no id submit allows, but a record written by hand may hold any
    sqlite_backend.create_flow(FlowDetail(id=flow_id, name="odd", factory=STEPS, state="SUCCESS"))
    app = app_over(sqlite_backend)
    link = f"/flows/{quote(flow_id, safe='')}"
    assert f'href="{link}"' in html(get(app, "/flows"))
    page = get(app, link)
    assert page.status == 200 and 'id="flow-id">a/b?c d#e<' in html(page)


# ----------------------------------------------------------------- escaping


def test_every_page_shows_hostile_records_as_text(sqlite_backend: Backend) -> None:
    flow_id = hostile_flow(sqlite_backend)
    app = app_over(sqlite_backend, actions=True, allow=("tests.",))
    cookie = session_of(app)
    pages = {target: get(app, target, cookie=cookie) for target in
             ("/", "/flows", f"/flows/{flow_id}", f"/flows?name={quote(HOSTILE)}", "/login")}
    pages["404"] = get(app, f"/flows/{quote(HOSTILE, safe='')}")
    pages["400"] = get(app, f"/flows?after={quote(HOSTILE)}")
    for target, response in pages.items():
        text = html(response)
        assert not [m for m in RAW_MARKUP if m in text], f"{target} printed a stored string raw"
    escaped = "&lt;script&gt;window.__pwned=1&lt;/script&gt;"
    for target in ("/", f"/flows/{flow_id}", "404"):
        assert escaped in html(pages[target]), target
    assert "&lt;script&gt;window.__pwned=1" in html(pages["/flows"])  # the name, cut to a cell


def test_the_flow_page_shows_every_hostile_field(sqlite_backend: Backend) -> None:
    flow_id = hostile_flow(sqlite_backend)
    page = html(get(app_over(sqlite_backend), f"/flows/{flow_id}"))
    escaped = "&lt;script&gt;window.__pwned=1&lt;/script&gt;&lt;img src=x onerror=&#34;window.__pwned=2&#34;&gt;"
    for shown in (f'<span id="reason">{escaped}</span>', f'<p class="message">{escaped}</p>', f"{escaped}</pre>",
                  f'<dd id="owner">{escaped} (claim'):
        assert shown in page, shown
    assert page.count(escaped) >= 8  # name, reason, failure, traceback, decline, history, attempt, owner...
    assert "<svg" in page and "<style" not in page  # the drawing inlined, its stylesheet served as a file


def test_control_characters_are_shown_not_obeyed(sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "SUCCESS", name="evil\u202egnp.exe\x1b[31m")
    page = html(get(app_over(sqlite_backend), f"/flows/{flow_id}"))
    assert "evil\\u202egnp.exe\\u001b[31m" in page
    assert "\u202e" not in page and "\x1b" not in page


# ----------------------------------------------------------------- headers


def test_every_answer_carries_the_security_headers(sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "FAILURE", tasks=[task("s0", "FAILURE", failure={"type": "E", "message": "m",
                                                                                     "traceback": "t"})])
    app = app_over(sqlite_backend)
    answers = [get(app, t) for t in ("/", "/flows", f"/flows/{flow_id}", "/nope", "/flows?after=x",
                                     "/static/style.css")]
    answers += [post(app, "/", {}), get(app, "/", host="evil.example")]
    for response in answers:
        assert (header(response, "Content-Security-Policy") or "").startswith(CSP)
        assert header(response, "X-Content-Type-Options") == "nosniff"
        assert header(response, "Referrer-Policy") == "no-referrer"
        assert header(response, "X-Frame-Options") == "DENY"


def test_pages_hold_no_inline_script_or_style(sqlite_backend: Backend) -> None:
    flow_id = hostile_flow(sqlite_backend)
    app = app_over(sqlite_backend, actions=True)
    cookie = session_of(app)
    for target in ("/", "/flows", f"/flows/{flow_id}", "/login", "/nope"):
        text = html(get(app, target, cookie=cookie))
        assert re.findall(r"<script(?![^>]*\bsrc=)", text) == [], target
        assert "<style" not in text and " style=" not in text and " on" + "load=" not in text, target


# -------------------------------------------------------------- Host check


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", ""])
def test_a_loopback_server_refuses_other_host_names(sqlite_backend: Backend, host: str) -> None:
    app = app_over(sqlite_backend)
    response = app.handle(Request("GET", "/", {"host": host} if host else {}))
    assert "Host header" in one_line_error(response, 403)


@pytest.mark.parametrize("host", ["127.0.0.1:8765", "localhost:8765", "LOCALHOST", "[::1]:8765", "127.0.0.1"])
def test_a_loopback_server_answers_to_its_own_names(sqlite_backend: Backend, host: str) -> None:
    assert app_over(sqlite_backend).handle(Request("GET", "/", {"host": host})).status == 200


def test_a_server_not_on_loopback_takes_any_host(sqlite_backend: Backend) -> None:
    app = WebApp(Ops(sqlite_backend), UiOptions(), Guard(hosts=None))
    assert app.handle(Request("GET", "/", {"host": "flows.internal.example:9464"})).status == 200


# ------------------------------------------------------------------- login


def test_the_token_opens_a_strict_http_only_session(sqlite_backend: Backend) -> None:
    app = app_over(sqlite_backend, actions=True)
    wrong = get(app, "/login?token=guess")
    assert "wrong token" in one_line_error(wrong, 403) and header(wrong, "Set-Cookie") is None
    right = get(app, f"/login?token={quote(TOKEN)}")
    assert right.status == 303 and header(right, "Location") == "/"
    cookie = header(right, "Set-Cookie") or ""
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    form = html(get(app, "/login"))
    assert '<form method="post" action="/login"' in form and 'type="password" name="token"' in form
    posted = post(app, "/login", {"token": TOKEN}, origin=ORIGIN)
    assert posted.status == 303 and "HttpOnly" in (header(posted, "Set-Cookie") or "")
    assert "Origin" in one_line_error(post(app, "/login", {"token": TOKEN}, origin="http://evil.example"), 403)


def test_a_forged_session_cookie_is_no_session(sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "FAILURE")
    app = app_over(sqlite_backend, actions=True)
    name = app.guard.cookie_name
    for forged in (f"{name}=abc.def", f"{name}=", "junk", f"{name}=x.{'0' * 64}"):
        assert 'name="csrf"' not in html(get(app, f"/flows/{flow_id}", cookie=forged))
    other = WebApp(Ops(sqlite_backend), UiOptions(actions=True), Guard(token=TOKEN, hosts=LOOPBACK_NAMES))
    foreign = session_of(other)  # another server's session (another secret)
    assert 'name="csrf"' not in html(get(app, f"/flows/{flow_id}", cookie=foreign.replace(other.guard.cookie_name,
                                                                                           name)))


# ----------------------------------------------------------------- actions


def test_pages_show_no_buttons_without_actions_or_session(sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "FAILURE")
    read_only = html(get(app_over(sqlite_backend), f"/flows/{flow_id}"))
    assert 'method="post"' not in read_only and "Log in" not in read_only
    logged_out = html(get(app_over(sqlite_backend, actions=True), f"/flows/{flow_id}"))
    assert 'method="post"' not in logged_out and "Log in</a> with the server's token" in logged_out


def _forms(app: WebApp, flow_id: str) -> tuple[str, str]:
    cookie = session_of(app)
    return cookie, csrf_in(get(app, f"/flows/{flow_id}", cookie=cookie))


@pytest.mark.parametrize("case", ["no session", "no csrf", "wrong csrf", "another session's csrf",
                                  "cross-origin", "no origin", "null origin", "cross-site referer"])
def test_an_action_without_session_csrf_or_same_origin_changes_nothing(sqlite_backend: Backend, case: str) -> None:
    flow_id = store(sqlite_backend, "PENDING")  # a cancel would apply: only the checks refuse it
    app = app_over(sqlite_backend, actions=True)
    cookie, csrf = _forms(app, flow_id)
    headers = {"cookie": cookie, "origin": ORIGIN}
    form = {"csrf": csrf}
    if case == "no session":
        del headers["cookie"]
    elif case == "no csrf":
        form = {}
    elif case == "wrong csrf":
        form = {"csrf": csrf[:-4] + "0000"}
    elif case == "another session's csrf":
        form = {"csrf": _forms(app, flow_id)[1]}
    elif case == "cross-origin":
        headers["origin"] = "http://evil.example"
    elif case == "no origin":
        del headers["origin"]
    elif case == "null origin":
        headers["origin"] = "null"
    else:
        del headers["origin"]
        headers["referer"] = "http://evil.example/flows"
    refused = post(app, f"/flows/{flow_id}/cancel", form, **headers)
    one_line_error(refused, 403)
    assert sqlite_backend.load_flow(flow_id).state == "PENDING"


def test_a_cancel_from_the_page_is_done_and_said_once(sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "PENDING")
    app = app_over(sqlite_backend, actions=True)
    cookie, csrf = _forms(app, flow_id)
    done = post(app, f"/flows/{flow_id}/cancel", {"csrf": csrf}, cookie=cookie, referer=f"{ORIGIN}/flows/{flow_id}")
    assert done.status == 303 and header(done, "Location") == f"/flows/{flow_id}"
    assert sqlite_backend.load_flow(flow_id).state == "CANCELLED"
    flash = (header(done, "Set-Cookie") or "").split(";", 1)[0]
    page = get(app, f"/flows/{flow_id}", cookie=f"{cookie}; {flash}")
    assert re.search(r'id="flash" class="flash done">cancelled flow ' + flow_id, html(page))
    assert "Max-Age=0" in (header(page, "Set-Cookie") or "")  # shown once
    tampered = flash[:-3] + "abc"
    assert 'id="flash"' not in html(get(app, f"/flows/{flow_id}", cookie=f"{cookie}; {tampered}"))


def test_a_refused_action_says_why_and_changes_nothing(sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "SUCCESS")
    app = app_over(sqlite_backend, actions=True)
    cookie, csrf = _forms(app, flow_id)
    refused = post(app, f"/flows/{flow_id}/retry", {"csrf": csrf}, cookie=cookie, origin=ORIGIN)
    assert refused.status == 303 and sqlite_backend.load_flow(flow_id).state == "SUCCESS"
    flash = (header(refused, "Set-Cookie") or "").split(";", 1)[0]
    page = html(get(app, f"/flows/{flow_id}", cookie=f"{cookie}; {flash}"))
    assert 'class="flash refused">retry refused: ' in page


def test_release_asks_the_live_owner_to_hand_the_flow_back(sqlite_backend: Backend) -> None:
    present(sqlite_backend, "r1", ["tests."])
    flow_id = store(sqlite_backend, "RUNNING")
    sqlite_backend.claim(flow_id, "r1", 60.0)
    app = app_over(sqlite_backend, actions=True)
    cookie, csrf = _forms(app, flow_id)
    asked = post(app, f"/flows/{flow_id}/release", {"csrf": csrf}, cookie=cookie, origin=ORIGIN)
    assert asked.status == 303
    assert [h.flow_id for h in sqlite_backend.load_handovers("r1")] == [flow_id]
    assert post(app, "/flows/0123456789abcdef/cancel", {"csrf": csrf}, cookie=cookie, origin=ORIGIN).status == 404
    assert post(app, f"/flows/{flow_id}/delete", {"csrf": csrf}, cookie=cookie, origin=ORIGIN).status == 404


# -------------------------------------------------------------------- plan


def test_the_plan_needs_an_allow_list(sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "FAILURE", tasks=[task("s0", "SUCCESS"), task("s1", "FAILURE")])
    without = html(get(app_over(sqlite_backend), f"/flows/{flow_id}"))
    assert 'id="plan-note">start the server with --allow PREFIX' in without
    planned = html(get(app_over(sqlite_backend, allow=("tests.",)), f"/flows/{flow_id}"))
    assert '<table id="plan">' in planned and "<th>reuse</th><td>s0</td>" in planned
    refused = html(get(app_over(sqlite_backend, allow=("billing.",)), f"/flows/{flow_id}"))
    assert 'id="plan-note">no plan: ' in refused


# ------------------------------------------------------------------- pages


def _walk(app: WebApp, target: str) -> list[list[str]]:
    """Every page from ``target`` on, following "next page": the flow ids of each."""
    pages = []
    while target:
        response = get(app, target)
        assert response.status == 200, html(response)
        text = html(response)
        pages.append(re.findall(r'<tr class="flow" data-flow="([^"]+)">', text))
        found = re.search(r'id="next" rel="next" href="([^"]+)"', text)
        target = found.group(1).replace("&amp;", "&") if found else ""
    return pages


def test_flows_page_by_cursor_with_their_filters(sqlite_backend: Backend) -> None:
    many = many_flows(sqlite_backend, 120)
    failed = [store(sqlite_backend, "FAILURE", name="broken") for _ in range(3)]
    app = app_over(sqlite_backend)
    pages = _walk(app, "/flows")
    assert [len(p) for p in pages] == [50, 50, 23]
    assert [f for p in pages for f in p] == [*many, *failed]  # oldest first, none twice
    assert [len(p) for p in _walk(app, "/flows?state=SUCCESS")] == [50, 50, 20]
    assert _walk(app, "/flows?state=failure") == [failed]
    assert _walk(app, "/flows?name=broken&factory=tests.*") == [failed]
    assert len(_walk(app, "/flows?name=steps-3")[0]) == len([i for i in range(120) if i % 7 == 3])
    second = html(get(app, "/flows?state=SUCCESS&after=50"))
    assert 'id="first" href="/flows?state=SUCCESS"' in second and "state=SUCCESS&amp;after=" in second


def test_timestamps_are_local_times(sqlite_backend: Backend) -> None:
    stamp = time.time() - 3600
    flow_id = store(sqlite_backend, "SUCCESS", updated_at=stamp)
    assert time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) in html(get(app_over(sqlite_backend),
                                                                             f"/flows/{flow_id}"))

