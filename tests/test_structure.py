"""The package's shape: imports point down, test code stays out of the
product, and factory names stored by earlier releases keep resolving."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import flowbaton
from flowbaton.engine.compiler import compile_flow
from flowbaton.engine.factory import build_flow, load_factory

PACKAGE = Path(flowbaton.__file__).parent
#: each subpackage's rank: a module may import its own package and lower ranks
RANKS = {
    "_version": 0,
    "backends": 0,
    "engine": 1,
    "demo": 2,
    "observability": 2,
    "coordinator": 3,
    "ops": 4,
    "aio": 4,
    "web": 5,
    "cli": 6,
    "__init__": 7,
    "__main__": 8,
    "testing": 9,
}


def _imports(path: Path) -> list[str]:
    """Every flowbaton module ``path`` imports, absolute dotted names."""
    package = ["flowbaton", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found += [name] if node.module else [f"{name}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name == "flowbaton" or name.startswith("flowbaton.")]


def _subpackage(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _top(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_subpackage_has_a_rank() -> None:
    assert {_top(path) for path in MODULES} <= set(RANKS)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    top = _top(path)
    upward = [name for name in _imports(path)
              if _subpackage(name) != top and RANKS[_subpackage(name)] > RANKS[top]]
    assert upward == [], f"{path.relative_to(PACKAGE)} imports upward: {upward}"


def test_the_product_never_imports_test_code() -> None:
    offenders = [str(path.relative_to(PACKAGE)) for path in MODULES if _top(path) != "testing"
                 and any(name.startswith("flowbaton.testing") for name in _imports(path))]
    assert offenders == []


def test_the_demo_factory_name_stored_by_earlier_releases_still_builds_the_demo() -> None:
    old, new = "flowbaton.coordinator.demo_flow:provision", "flowbaton.demo.flows:provision"
    built = [compile_flow(build_flow(load_factory(name, [name]), name, [], {}), {"ledger": "-"}) for name in (old, new)]
    assert built[0].order == built[1].order and len(built[0].order) == 8
