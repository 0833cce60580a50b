"""Contract: URLs and options name what is wrong; missing drivers say how to install."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.errors import BadBackendURL, MissingDriver


def test_unknown_option_names_the_key(backend_url: str) -> None:
    joiner = "&" if "?" in backend_url else "?"
    with pytest.raises(BadBackendURL, match="no_such_option"):
        open_backend(f"{backend_url}{joiner}no_such_option=1")


def test_unknown_keyword_option_names_the_key(backend_url: str) -> None:
    with pytest.raises(BadBackendURL, match="bogus_kw"):
        open_backend(backend_url, bogus_kw=1)


def test_unknown_scheme_is_named() -> None:
    with pytest.raises(BadBackendURL, match="nosuchdb"):
        open_backend("nosuchdb://host/x")


@pytest.mark.parametrize(
    ("url", "extra"),
    [("redis://localhost:6379/0", "redis"), ("rediss://localhost:6380/0", "redis"),
     ("zookeeper://localhost:2181/ns", "zookeeper")],
)
def test_missing_client_library_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, url: str, extra: str
) -> None:
    real_import = importlib.import_module

    def without_driver(name: str, package: str | None = None) -> ModuleType:
        if name.startswith("flowbaton.backends.") and name.endswith(("redis", "zookeeper")):
            raise ImportError(f"No module named {name.rsplit('.', 1)[1]!r}")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", without_driver)
    with pytest.raises(MissingDriver, match=rf"pip install 'flowbaton\[{extra}\]'"):
        open_backend(url)
