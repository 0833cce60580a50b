"""The pure pieces: codec checks and the schedules, without any backend."""

from __future__ import annotations

import pytest

from flowbaton.engine import compile_flow
from flowbaton.engine.codec import encode
from flowbaton.engine.errors import NotJSONError
from flowbaton.engine.scheduler import ForwardSchedule, RevertSchedule
from tests import engine_flows as ef


@pytest.mark.parametrize(("value", "message"), [
    (float("nan"), r"x: nan is not a finite number"),
    ({1: "a"}, r"x: key 1 is int, JSON keys are str"),
    ([1, (2, 3)], r"x\[1\]: tuple is not plain JSON"),
    ({"a": {"b": b"raw"}}, r"x\['a'\]\['b'\]: bytes is not plain JSON"),
    ([1, -(10 ** 5000)], r"x\[1\]: an int of 16,610 bits is too long to store as JSON"),
])
def test_encode_refuses_with_the_path(value: object, message: str) -> None:
    with pytest.raises(NotJSONError, match=message):
        encode(value, "x")


def test_encode_passes_plain_json_through() -> None:
    value = {"a": [1, 2.5, None, True, "s", {"b": []}]}
    assert encode(value, "x") == value


def test_forward_schedule_prefers_definition_order_and_respects_edges() -> None:
    compiled = compile_flow(ef.graph_flow())
    schedule = ForwardSchedule(compiled, done=[])
    assert schedule.pop() == "a" and not schedule.has_ready()
    schedule.finished("a")
    assert [schedule.pop(), schedule.pop()] == ["c", "b"]  # c is defined before b
    schedule.finished("b")
    assert not schedule.has_ready()
    schedule.finished("c")
    assert schedule.pop() == "d"


def test_revert_schedule_undoes_successors_first() -> None:
    compiled = compile_flow(ef.graph_flow())
    schedule = RevertSchedule(compiled, ["a", "b", "c"])
    first = {schedule.pop(), schedule.pop()}
    assert first == {"b", "c"} and not schedule.has_ready()
    schedule.reverted("b")
    assert not schedule.has_ready()
    schedule.reverted("c")
    assert schedule.pop() == "a"


def test_schedule_cost_is_flat_for_large_flows() -> None:
    compiled = compile_flow(ef.steps(10_000))
    schedule = ForwardSchedule(compiled, done=[])
    count = 0
    while schedule.has_ready():
        tid = schedule.pop()
        schedule.finished(tid)
        count += 1
    assert count == 10_000
