"""Every name the API reference documents has a docstring that says something.

The reference pages (docs/reference/*.md) are the list of the public API:
each ``::: dotted.name`` block there is rendered by mkdocstrings from the
object's docstring. This test walks the same blocks, so the site and the
test cannot disagree on what is public:

- the object of every block has a docstring of its own that says more than
  its name (a dataclass's generated ``Name(field, ...)`` does not count);
- a class block covers the public methods and properties the class itself
  defines, or, when the block lists ``members:``, exactly those; a member
  left off that list must still lack a docstring (once it has one, the
  list has to name it, or the site would hide it);
- a module block (``members: false``) shows the module's docstring;
- every class and function in the ``__all__`` of a documented module has a
  block of its own (under that name, or where it is defined: ``flowbaton.task``
  is shown as ``flowbaton.engine.task.task``, since griffe, which reads the
  source, takes ``flowbaton.engine.task`` for the module of that name), so a
  new public name cannot be left out of the site.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"

#: Words a docstring may use on top of its name and still say nothing.
FILLER = frozenset({"a", "an", "the", "of", "to", "for", "is", "it", "this", "that", "and", "or", "return", "returns",
                    "get", "gets", "set", "sets"})

_BLOCK = re.compile(r"^::: (?P<name>\S+)[ \t]*\n(?P<options>(?:(?:[ \t]+\S.*)?\n)*)", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    """One ``::: name`` block of a reference page and its mkdocstrings options."""

    page: str
    name: str
    options: dict[str, Any]

    @property
    def members(self) -> list[str] | None:
        """The members the block names (``false`` names none), or None: all of them."""
        value = self.options.get("members")
        if value is None or value is True:
            return None
        return list(value or [])


def reference_blocks() -> Iterator[Block]:
    for page in sorted(REFERENCE.glob("*.md")):
        for found in _BLOCK.finditer(page.read_text()):
            loaded = yaml.safe_load(textwrap.dedent(found["options"])) or {}
            yield Block(page.name, found["name"], loaded.get("options") or {})


BLOCKS = list(reference_blocks())


def resolve(dotted: str) -> Any:
    """The object a dotted name names: a module, or a name inside one."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)


def is_api_object(obj: Any) -> bool:
    """A class or a function: what needs a docstring (constants and type aliases do not)."""
    if isinstance(obj, (types.GenericAlias, types.UnionType)):
        return False
    return inspect.isclass(obj) or inspect.isfunction(obj)


def own_docstring(obj: Any) -> str:
    """The docstring written on ``obj`` itself: not inherited, not generated."""
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__") or ""
        return "" if doc.startswith(f"{obj.__name__}(") else doc  # a dataclass's generated signature
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    return getattr(obj, "__doc__", None) or ""


def says_something(doc: str, name: str) -> bool:
    """Non-empty, and more than the name's own words."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").lower()
    said = set(re.findall(r"[a-z0-9]+", doc.lower()))
    return bool(said - set(re.findall(r"[a-z0-9]+", spaced)) - FILLER)


def public_members(cls: type) -> dict[str, Any]:
    """The methods and properties a class defines itself, without a leading ``_``."""
    kinds = (types.FunctionType, property, staticmethod, classmethod)
    return {name: value for name, value in vars(cls).items() if not name.startswith("_") and isinstance(value, kinds)}


def undocumented(block: Block) -> list[str]:
    """What the block shows without a docstring that says something."""
    obj = resolve(block.name)
    missing = [] if says_something(own_docstring(obj), block.name.rpartition(".")[2]) else [block.name]
    if not inspect.isclass(obj):
        return missing
    members = public_members(obj)
    shown = list(members) if block.members is None else block.members
    for name in shown:
        value = members.get(name, getattr(obj, name, None))
        if value is None or not says_something(own_docstring(value), name):
            missing.append(f"{block.name}.{name}")
    return missing


def hidden_but_documented(block: Block) -> list[str]:
    """Members a ``members:`` list leaves out although they have a docstring now."""
    obj = resolve(block.name)
    if not inspect.isclass(obj) or block.members is None:
        return []
    return [f"{block.name}.{name}" for name, value in public_members(obj).items()
            if name not in block.members and says_something(own_docstring(value), name)]


def documented_modules() -> list[str]:
    return [block.name for block in BLOCKS if inspect.ismodule(resolve(block.name))]


def test_the_reference_has_blocks() -> None:
    assert {block.page for block in BLOCKS} >= {"flowbaton.md", "aio.md", "ops.md", "backends.md", "testing.md"}
    assert "flowbaton.Coordinator" in {block.name for block in BLOCKS}


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_documented_names_have_docstrings(block: Block) -> None:
    assert undocumented(block) == [], f"docs/reference/{block.page}: no docstring that says something"


@pytest.mark.parametrize("block", [block for block in BLOCKS if block.members is not None], ids=lambda b: b.name)
def test_members_lists_name_every_documented_member(block: Block) -> None:
    assert hidden_but_documented(block) == [], f"docs/reference/{block.page}: add these to the block's members:"


@pytest.mark.parametrize("module", documented_modules())
def test_every_public_name_has_a_block(module: str) -> None:
    shown = {id(resolve(block.name)) for block in BLOCKS}  # by object: a block may name where it is defined
    exported = getattr(importlib.import_module(module), "__all__", [])
    public = [f"{module}.{name}" for name in exported if is_api_object(resolve(f"{module}.{name}"))]
    left_out = [name for name in public if id(resolve(name)) not in shown]
    assert left_out == [], "public names missing from docs/reference/*.md"
