"""The web view in a real browser (headless Chromium, the session's one):
a takeover after kill -9 drawn from real replicas' records, a hostile
record shown as text with nothing run, 10,000 flows paged in under a second
a page, and pages that reload themselves under the CSP."""

from __future__ import annotations

import re
import signal
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from flowbaton.backends.base import Backend
from flowbaton.web import UiOptions
from tests.coordinator.cluster import Cluster
from tests.servers import until

from .conftest import fetch, served
from .seeds import HOSTILE, hostile_flow, many_flows

pytestmark = pytest.mark.slow

#: The target for a page of flows, from request to load event (docs/design.md, "Targets").
PAGE_MS = 1000.0
_NAVIGATION = ("const n = performance.getEntriesByType('navigation')[0];"
               "return n && n.loadEventEnd > 0 ? n.duration : null;")


def load_ms(browser: WebDriver) -> float:
    """The current page's navigation, request to load event, in milliseconds."""
    found: float = WebDriverWait(browser, 10).until(lambda d: d.execute_script(_NAVIGATION))
    return found


def follow(browser: WebDriver, link: WebElement) -> float:
    """Click ``link`` and wait for the next page: its load time (ms)."""
    link.click()
    WebDriverWait(browser, 10).until(staleness_of(link))
    return load_ms(browser)


def attributes(browser: WebDriver, selector: str, *names: str) -> list[tuple[str | None, ...]]:
    return [tuple(e.get_attribute(n) for n in names) for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def csp_violations(browser: WebDriver) -> list[str]:
    """What the browser refused under the Content-Security-Policy since last asked."""
    return [e["message"] for e in browser.get_log("browser") if "Content Security Policy" in e["message"]]


def test_a_takeover_after_kill_9_is_drawn_on_the_flow_page(cluster: Cluster, browser: WebDriver) -> None:
    cluster.spawn("r1", lease=1.0)  # a short lease: the takeover is what the page shows, not what is timed
    cluster.spawn("r2", lease=1.0)
    cluster.wait_registered("r1", "r2")
    flow_id = cluster.submit(n=6, pause=0.4)
    cluster.wait_runs(flow_id, 3)  # s2 started: s0 and s1 are done
    victim = str(until(lambda: cluster.backend.current_claim(flow_id), 10, "a claim").owner)
    survivor = next(name for name in cluster.replicas if name != victim)
    cluster.replicas[victim].signal(signal.SIGKILL)
    cluster.replicas[victim].proc.wait()
    in_doubt = [t for t, d in cluster.backend.load_tasks(flow_id).items() if d.state == "RUNNING"]
    assert len(in_doubt) == 1
    cluster.wait_done(flow_id)

    with served(cluster.backend) as server:
        browser.get(f"{server.url}flows/{flow_id}")
        csp_violations(browser)  # the page's own, below, are what count
        legend = {r for (r,) in attributes(browser, "#timeline svg g.replica", "data-replica")}
        assert {victim, survivor} <= legend
        assert {victim, survivor} <= {r for (r,) in attributes(browser, "#timeline svg g.attempt", "data-replica")}
        assert (victim, survivor) in attributes(browser, "#timeline svg g.takeover", "data-from", "data-to")
        task = in_doubt[0]
        attempts = attributes(browser, f'#timeline svg g.attempt[data-task="{task}"]', "data-replica", "data-outcome")
        assert attempts == [(victim, "in doubt"), (survivor, "success")]  # two attempts, the first in doubt
        bar = browser.find_element(By.CSS_SELECTOR, f'#timeline svg g.attempt.in-doubt[data-task="{task}"] rect.bar')
        assert bar.value_of_css_property("stroke-dasharray") not in ("", "none")  # timeline.css applied
        assert browser.find_elements(By.CSS_SELECTOR, f'table.attempts[data-task="{task}"] tr.in-doubt')
        assert csp_violations(browser) == []


def test_a_hostile_failure_message_is_shown_as_text_and_never_run(sqlite_backend: Backend,
                                                                 browser: WebDriver) -> None:
    flow_id = hostile_flow(sqlite_backend)
    with served(sqlite_backend) as server:
        for page in ("", "flows", f"flows?name={HOSTILE}", f"flows/{flow_id}"):
            browser.get(server.url + page)  # the load event: any <img onerror> would have run
            assert browser.execute_script("return window.__pwned") is None, page
            assert browser.find_elements(By.CSS_SELECTOR, "img") == []
            assert attributes(browser, "script", "src") == [(f"{server.url}static/refresh.js",)]
        message = browser.find_element(By.CSS_SELECTOR, 'section.failure[data-task="s1"] p.message')
        assert message.text == HOSTILE
        assert HOSTILE in browser.find_element(By.CSS_SELECTOR, "pre.traceback").text
        assert browser.find_element(By.ID, "reason").text == HOSTILE
        assert csp_violations(browser) == []


def test_ten_thousand_flows_page_in_under_a_second_a_page(sqlite_backend: Backend, browser: WebDriver) -> None:
    started = time.monotonic()
    ids = many_flows(sqlite_backend, 10_000)
    assert time.monotonic() - started < 5.0, "seeding is the test's own cost, kept small"
    with served(sqlite_backend) as server:
        browser.get(f"{server.url}flows")
        spent, seen = load_ms(browser), []
        for _ in range(6):  # the first page, then "next page" five times
            assert spent < PAGE_MS, f"a page of flows took {spent:.0f} ms"
            rows = [r for (r,) in attributes(browser, "tr.flow", "data-flow")]
            assert len(rows) == 50
            seen += rows
            spent = follow(browser, browser.find_element(By.ID, "next"))
        assert seen == ids[:300]  # in order, none twice

        last = _walk_over_http(server.url + "flows", ids)
        browser.get(last)
        assert load_ms(browser) < PAGE_MS
        assert [r for (r,) in attributes(browser, "tr.flow", "data-flow")] == ids[-50:]
        assert browser.find_elements(By.ID, "next") == []


def _walk_over_http(url: str, ids: list[str]) -> str:
    """Every page over plain HTTP, each under a second; the last page's URL."""
    seen: list[str] = []
    while True:
        started = time.monotonic()
        page = fetch(url)
        assert time.monotonic() - started < PAGE_MS / 1000 and page.status == 200
        rows = re.findall(r'<tr class="flow" data-flow="([^"]+)">', page.body)
        assert len(rows) == 50
        seen += rows
        found = re.search(r'id="next" rel="next" href="([^"]+)"', page.body)
        if found is None:
            break
        url = url.split("/flows", 1)[0] + found.group(1).replace("&amp;", "&")
    assert len(seen) == len(set(seen)) == 10_000 and seen == ids
    return url


def test_pages_reload_themselves_with_our_own_script(sqlite_backend: Backend, browser: WebDriver) -> None:
    with served(sqlite_backend, UiOptions(refresh=0.5)) as server:
        browser.get(server.url)
        browser.execute_script("window.__before_reload = true;")
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.__before_reload") is None)
        assert csp_violations(browser) == []
