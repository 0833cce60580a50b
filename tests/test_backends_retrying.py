"""The drivers' shared retry loop (backends/retrying.py), without I/O or sleeps."""

from __future__ import annotations

import pytest
from tenacity import RetryCallState, wait_none

from flowbaton.backends.retrying import RetryPolicy


class Transient(Exception):
    pass


def _policy(deadline: float = 60.0) -> RetryPolicy:
    return RetryPolicy(deadline, wait_none(), lambda err: isinstance(err, Transient))


def test_a_step_after_a_transient_error_is_told_it_may_have_landed() -> None:
    seen: list[bool] = []

    def step(retried: bool) -> str:
        seen.append(retried)
        if len(seen) < 3:
            raise Transient("reply lost")
        return "done"

    retries: list[int] = []
    assert _policy().run(step, on_retry=lambda state: retries.append(state.attempt_number)) == "done"
    assert seen == [False, True, True]
    assert retries == [1, 2]


def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    calls: list[bool] = []

    def step(retried: bool) -> None:
        calls.append(retried)
        raise KeyError("bad input")

    with pytest.raises(KeyError):
        _policy().run(step)
    assert calls == [False]


def test_past_the_deadline_the_last_error_is_raised_as_it_is() -> None:
    attempts: list[bool] = []
    announced: list[RetryCallState] = []

    def step(retried: bool) -> None:
        attempts.append(retried)
        raise Transient(f"attempt {len(attempts)}")

    with pytest.raises(Transient, match="attempt 1"):
        _policy(deadline=0).run(step, on_retry=announced.append)
    assert attempts == [False] and announced == []  # the budget was spent: no retry announced
