"""A service's flows module, as an attacker finds it: it imports ``logging``
(which imports ``os``), re-exports a function from another module, keeps
private helpers and module-level objects. Only ``build``, ``Builders`` and
``callable_builder`` are factories; every other name here is a way out that
the resolution rule must close (docs/security.md, "What the allow-list guarantees")."""

from __future__ import annotations

import logging
import os.path
from os import system  # noqa: F401 - re-exported on purpose: not defined here
from typing import Any

from flowbaton.engine import Flow, Linear, task

log = logging.getLogger(__name__)  # an instance: its methods are not factories


@task(id="noop")
def noop() -> int:
    return 1


def build() -> Flow:
    """The one plain factory."""
    return Linear("hostile-good", noop)


def _private_build(command: str) -> Flow:
    """A private helper that does harm: never reachable by name."""
    os.system(command)
    return build()


class Builders:
    """Factories as class members: classmethod and staticmethod allowed."""

    @classmethod
    def create(cls) -> Flow:
        return build()

    @staticmethod
    def static() -> Flow:
        return build()

    def method(self) -> Flow:  # plain method: reached only through the class, unbound
        return build()


class Shell:
    """A class with a method that runs a command, used through an instance."""

    def run(self, command: str) -> int:
        return os.system(command)

    def __call__(self) -> Flow:
        return build()


shell = Shell()          # shell.run is an attribute of an instance
callable_builder = Shell()  # a module-level callable object of a class defined here

config: dict[str, Any] = {"system": os.system}  # a dict holding a foreign function
