"""Factories for definition and refusal tests (module level, importable)."""

from __future__ import annotations

from typing import Any

from flowbaton.engine import Flow, Graph, Linear, Task, Unordered, task


@task(id="one", provides="x")
def one() -> int:
    return 1


@task(id="two", provides="y")
def two(x: int) -> int:
    return x + 1


@task(id="three")
def three(y: int, z: int = 5) -> int:
    return y + z


def good() -> Flow:
    return Linear("good", one, two, three)


def duplicate() -> Flow:
    return Linear("dup", one, Unordered("inner", one.clone(provides="other")))


def cycle() -> Flow:
    g = Graph("cyc", one, two, three)
    return g.link(three, one)


def backwards() -> Flow:
    return Linear("backwards", two, one)


def missing() -> Flow:
    return Linear("missing", two)


def not_a_flow() -> Any:
    return [one, two]


def raises() -> Flow:
    raise ValueError("no flow today")


def with_args(count: int, label: str = "x") -> Flow:
    return Linear(label, *[one.clone(id=f"one-{n}", provides=None) for n in range(count)])


class Factories:
    @classmethod
    def from_class(cls) -> Flow:
        return good()

    @staticmethod
    def static() -> Flow:
        return good()


class _Callable:
    def __call__(self) -> Flow:
        return good()


callable_object = _Callable()


def make_nested() -> Any:
    def nested() -> Flow:
        return good()

    return nested


def make_closure() -> Any:
    count = 3

    def closure() -> Flow:
        return with_args(count)

    return closure


lam = lambda: good()  # noqa: E731 - a lambda on purpose

alias = good


class Plain(Task):
    def execute(self) -> None:
        return None


def pair_provider() -> Flow:
    @task(id="pair", provides=("left", "right"))
    def pair() -> list[int]:
        return [1, 2]

    return Linear("pairs", pair)
