"""The poison rule on its own: the counter a claim writes, and when a count
is too many. No backend: both are decisions without I/O."""

from __future__ import annotations

import pytest

from flowbaton.engine.meta import FlowMeta
from flowbaton.engine.poison import PoisonRule, takeovers_after


@pytest.mark.parametrize(("stored", "previous_owner", "progress", "count"), [
    ({}, None, 0, 0),  # the first claim sets the mark
    ({"takeovers": 2, "progress_mark": 1}, "dead", 1, 3),  # its owner never handed it back
    ({"takeovers": 2, "progress_mark": 1}, None, 1, 2),  # handed back gracefully: no takeover
    ({"takeovers": 2, "progress_mark": 1}, "dead", 2, 0),  # a task finished since: a fresh start
    ({"takeovers": 0}, "dead", 0, 0),  # counter reset by an operator (no mark)
])
def test_a_claim_counts_takeovers_without_progress(
    stored: dict[str, int], previous_owner: str | None, progress: int, count: int
) -> None:
    assert takeovers_after(FlowMeta(stored), previous_owner, progress) == count


def test_the_rule_holds_only_past_its_limit_and_says_why() -> None:
    rule = PoisonRule(max_takeovers=2)
    assert rule.hold_reason(2) is None
    assert rule.hold_reason(3) == ("taken over 3 times without any task finishing (limit 2): a task, or "
                                   "building the flow, may be crashing or hanging its replica")
