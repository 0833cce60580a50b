"""Fixtures of the web view's tests: a store to show, the app over it, real
HTTP requests, and one headless Chromium for the whole session.

The browser is Debian's ``chromium`` with its ``chromedriver`` (installed by
``.ci/run``), never a download: when either is missing the browser tests
fail, saying what to install, rather than skip and look green.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from flowbaton.backends.base import Backend
from flowbaton.ops import Ops
from flowbaton.web import LOOPBACK_NAMES, Guard, UiOptions, UiServer, WebApp
from tests.backends import backend_params
from tests.conftest import make_url
from tests.coordinator.cluster import cluster

__all__ = ["cluster", "no_page_fails", "shared_backend_url", "browser", "served", "fetch", "Fetched",
           "CHROMIUM", "CHROMEDRIVER"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
_CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--no-first-run", "--window-size=1280,1000")


@pytest.fixture(autouse=True)
def no_page_fails(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No page logged an error: a record the timeline cannot draw, say, still
    gets the page, but is a bug to see here."""
    yield
    failed = [r.getMessage() for r in caplog.get_records("call")
              if r.name.startswith("flowbaton.web") and r.levelno >= logging.ERROR]
    assert failed == []


@pytest.fixture(params=backend_params(("sqlite", "redis")))
def shared_backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The backends the browser's failover test runs on (the ``cluster`` fixture's)."""
    return make_url(request.param, request, tmp_path)


@contextmanager
def served(backend: Backend, options: UiOptions | None = None, *, token: str | None = None) -> Iterator[UiServer]:
    """The web view over ``backend`` on a free loopback port, as ``flowbaton ui`` serves it."""
    app = WebApp(Ops(backend), options or UiOptions(refresh=0), Guard(token=token, hosts=LOOPBACK_NAMES))
    with UiServer(app, host="127.0.0.1", port=0) as server:
        yield server


@dataclass
class Fetched:
    status: int
    headers: Message
    body: str


def fetch(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None,
          timeout: float = 10.0) -> Fetched:
    """One real HTTP request; an error status is an answer, not an exception.
    Redirects are not followed (the tests look at them)."""
    request = urllib.request.Request(url, data=data, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            return Fetched(response.status, response.headers, response.read().decode())
    except urllib.error.HTTPError as err:
        with err:
            return Fetched(err.code, err.headers, err.read().decode())


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium, one for the session (its start is the slow part)."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if missing:
        pytest.fail(f"the browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} missing): "
                    "apt-get install chromium chromium-driver (.ci/run installs them)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (*_CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP violations show up there
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # a path given: no Selenium Manager
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
